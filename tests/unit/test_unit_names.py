"""Unit names are validated before any call; what the backends build from names and specs is exact."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unitctl.errors import SystemdError, UsageError
from unitctl.systemd.base import escape_exec_argv, transient_outcome
from unitctl.systemd.systemctl import parse_show, state_from_properties, transient_argv
from unitctl.unitname import COMMAND_TYPES, UNIT_TYPES, has_command_type, split_unit_name, validate_unit_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("app", "app.service"),
        ("app.service", "app.service"),
        ("my-app_2:x", "my-app_2:x.service"),
        ("app@blue", "app@blue.service"),
        ("app@.service", "app@.service"),
        ("app.socket", "app.socket"),
        ("web\\x2dapp.service", "web\\x2dapp.service"),
    ],
)
def test_valid_names(name: str, expected: str) -> None:
    assert validate_unit_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "",
        "app service",
        "app;reboot",
        "../etc/passwd",
        "-app",
        "app/x.service",
        "app.service\n",
        "a" * 250 + ".service",
        "$(id)",
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(UsageError, match="is not a valid systemd unit name") as info:
        validate_unit_name(name)
    assert info.value.exit_code == 2 and "\n" not in str(info.value).replace(repr(name), "")


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("app.service", ("app", None, "service")),
        ("app@.service", ("app", "", "service")),
        ("app@blue.socket", ("app", "blue", "socket")),
        ("home.automount", ("home", None, "automount")),
        ("user-1000.slice", ("user-1000", None, "slice")),
    ],
)
def test_split_unit_name_takes_every_systemd_type(name: str, parts: tuple[str, str | None, str]) -> None:
    assert split_unit_name(name) == parts


@pytest.mark.parametrize("name", ["home.automount", "user.slice", "app.conf", "app"])
def test_commands_take_only_their_types_with_the_same_message(name: str) -> None:
    with pytest.raises(UsageError, match="is not a valid systemd unit name"):
        validate_unit_name(name, default_suffix="")
    assert not has_command_type(name)


def test_command_types_are_unit_types() -> None:
    assert set(COMMAND_TYPES) <= set(UNIT_TYPES)
    assert all(has_command_type(f"x.{t}") for t in COMMAND_TYPES)


@given(st.text(max_size=40))
def test_validated_names_never_carry_shell_or_path_characters(name: str) -> None:
    try:
        out = validate_unit_name(name)
    except UsageError:
        return
    assert not set(out) & set(" /;$`'\"\n\t*?&|<>()")
    assert not out.startswith("-") and len(out) <= 255


def test_transient_argv_passes_identity_and_env_as_arguments() -> None:
    from unitctl.systemd.base import TransientSpec

    spec = TransientSpec(
        argv=["/bin/sh", "-c", "echo $HOME; rm -rf /", "x y"],
        user="www-data",
        group="www-data",
        cwd="/srv/app dir",
        env={"A": "1 2 $HOME", "B": "it's"},
        env_files=[("/etc/app.env", False), ("/etc/opt.env", True)],
        timeout=42.5,
    )
    argv = transient_argv(spec, "/usr/bin/systemd-run", unit="unitctl-run-x.service")
    assert argv == [
        "/usr/bin/systemd-run",
        "--wait",
        "--pipe",
        "--quiet",
        "--service-type=exec",
        "--unit=unitctl-run-x.service",
        "--property=RuntimeMaxSec=42",
        "--property=User=www-data",
        "--property=Group=www-data",
        "--property=WorkingDirectory=/srv/app dir",
        "--property=EnvironmentFile=/etc/app.env",
        "--property=EnvironmentFile=-/etc/opt.env",
        "--setenv=A=1 2 $HOME",
        "--setenv=B=it's",
        "--",
        "/bin/sh",
        "-c",
        "echo $$HOME; rm -rf /",
        "x y",
    ]


def test_transient_argv_resolves_the_executable_or_refuses() -> None:
    from unitctl.systemd.base import TransientSpec

    assert transient_argv(TransientSpec(argv=["sh"]))[-1].endswith("/sh")
    with pytest.raises(SystemdError, match="no such executable"):
        transient_argv(TransientSpec(argv=["no-such-binary-unitctl"]))
    with pytest.raises(SystemdError, match="empty argv"):
        transient_argv(TransientSpec(argv=[]))
    with pytest.raises(SystemdError, match="cannot be passed"):
        transient_argv(TransientSpec(argv=["sh"], env={"A=B": "x"}))


def test_escape_keeps_argv0() -> None:
    assert escape_exec_argv(["/opt/$weird/bin", "$A", "${B}", "$$"]) == ["/opt/$weird/bin", "$$A", "$${B}", "$$$$"]


def test_parse_show_and_state() -> None:
    out = (
        "Id=app.service\nLoadState=loaded\nActiveState=failed\nSubState=failed\nMainPID=0\nNRestarts=2\n"
        "Result=exit-code\nExecMainStatus=3\nInvocationID=0123456789abcdef0123456789abcdef\n"
        "NeedDaemonReload=yes\nFragmentPath=/etc/systemd/system/app.service\n"
        "DropInPaths=/etc/systemd/system/app.service.d/a.conf /run/systemd/system/app.service.d/b.conf\n"
        "UnitFileState=linked\nDescription=a=b\ngarbage line\n"
    )
    props = parse_show(out)
    assert props["Description"] == "a=b" and "garbage line" not in props
    state = state_from_properties("app.service", props)
    assert (state.active_state, state.result, state.exec_main_status, state.n_restarts) == ("failed", "exit-code", 3, 2)
    assert state.need_daemon_reload and state.is_failed and not state.is_active
    assert state.dropin_paths == (
        "/etc/systemd/system/app.service.d/a.conf",
        "/run/systemd/system/app.service.d/b.conf",
    )
    assert state.unit_file_state == "linked" and state.fragment_path == "/etc/systemd/system/app.service"
    odd = state_from_properties("x.service", {"MainPID": "[not set]", "LoadState": "not-found"})
    assert odd.main_pid == 0 and odd.load_state == "not-found" and odd.result == "success"
    assert (odd.fragment_path, odd.dropin_paths, odd.unit_file_state) == ("", (), "")


@pytest.mark.parametrize(
    ("result", "code", "status", "expected"),
    [
        ("success", 1, 0, 0),
        ("exit-code", 1, 4, 4),
        ("signal", 2, 9, 137),
        ("core-dump", 3, 11, 139),
        ("timeout", 2, 15, 143),
    ],
)
def test_transient_outcome(result: str, code: int, status: int, expected: int) -> None:
    res = transient_outcome("x", result=result, exec_main_code=code, exec_main_status=status, output="o\n")
    assert res.returncode == expected and res.result == result and res.output == "o\n"
    assert res.timed_out == (result == "timeout")


def test_transient_outcome_names_systemd_setup_failures_and_refuses_never_ran() -> None:
    res = transient_outcome("x", result="exit-code", exec_main_code=1, exec_main_status=200, output="")
    assert (
        res.returncode == 200
        and res.output
        == "(systemd could not start the command: status=200/CHDIR (WorkingDirectory= is missing or not accessible))\n"
    )
    with pytest.raises(SystemdError, match="could not start: Result=resources"):
        transient_outcome("x", result="resources", exec_main_code=0, exec_main_status=0, output="")
