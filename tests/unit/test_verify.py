"""verify_unit against the real systemd-analyze (offline test manager, no PID 1 needed) and unitctl's own checks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from unitctl.errors import ExitCode, InputError, UsageError, VerificationError
from unitctl.verify import check, verify_unit

pytestmark = pytest.mark.systemd_analyze  # skipped without the tool, failed in CI (tests/conftest.py)

GUNICORN = Path(sys.prefix) / "bin" / "gunicorn"
HERE = Path(__file__).resolve().parent  # a WorkingDirectory= that exists on every test host


def unit(tmp_path: Path, text: str, name: str = "app.service") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def good(extra: str = "", exec_args: str = "--workers 3 app:app") -> str:
    return (
        f"[Unit]\nDescription=app\n\n[Service]\nType=notify\nWorkingDirectory={HERE}\n"
        f"ExecStart={GUNICORN} {exec_args}\nExecReload=/bin/kill -s HUP $MAINPID\nKillMode=mixed\n{extra}"
        "\n[Install]\nWantedBy=multi-user.target\n"
    )


def test_clean_unit_has_no_findings(tmp_path: Path) -> None:
    report = verify_unit(unit(tmp_path, good()))
    assert report.errors == () and report.warnings == ()
    assert report.ok


def test_unknown_key_is_a_warning_naming_the_line(tmp_path: Path) -> None:
    path = unit(tmp_path, good("Bogus=1\n"))
    report = verify_unit(path)
    assert report.errors == ()
    assert any(f"{path}:" in w and "Unknown key" in w and "Bogus" in w for w in report.warnings), report


def test_missing_binary_is_an_error(tmp_path: Path) -> None:
    path = unit(tmp_path, "[Service]\nExecStart=/nonexistent/gunicorn app:app\n")
    report = verify_unit(path)
    assert any("/nonexistent/gunicorn" in e and "not executable" in e for e in report.errors), report
    with pytest.raises(VerificationError) as err:
        check(path)
    assert err.value.exit_code == ExitCode.REFUSED


def test_broken_section_header_is_an_error_pointing_at_the_users_file(tmp_path: Path) -> None:
    path = unit(tmp_path, "[Service\nExecStart=/bin/true\n")
    report = verify_unit(path)
    assert report.errors
    assert all("unitctl-verify-" not in line for line in report.errors + report.warnings)
    assert any(str(path) in e and "Invalid section header" in e for e in report.errors)


def test_uninstalled_file_with_other_name_is_loaded_as_name(tmp_path: Path) -> None:
    path = unit(tmp_path, good(), name="candidate.txt")
    with pytest.raises(UsageError, match="--name"):
        verify_unit(path)
    assert verify_unit(path, name="app.service").ok


def test_required_socket_next_to_the_service_is_found(tmp_path: Path) -> None:
    service = good().replace("[Unit]\n", "[Unit]\nRequires=web.socket\nAfter=web.socket\n")
    path = unit(tmp_path, service, name="web.service")
    assert any("web.socket" in e for e in verify_unit(path).errors)
    unit(tmp_path, "[Socket]\nListenStream=127.0.0.1:8000\n", name="web.socket")
    assert verify_unit(path).ok


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file") as err:
        verify_unit(tmp_path / "nope.service")
    assert err.value.exit_code == ExitCode.REFUSED


def test_missing_systemd_analyze_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = unit(tmp_path, good())
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(VerificationError, match="systemd-analyze is not installed") as err:
        verify_unit(path)
    assert err.value.exit_code == ExitCode.REFUSED


# --- unitctl's own checks ---------------------------------------------------------------------------


def findings(tmp_path: Path, text: str) -> tuple[str, str]:
    report = verify_unit(unit(tmp_path, text))
    return "\n".join(report.errors), "\n".join(report.warnings)


def test_preload_warns_that_reload_keeps_old_code(tmp_path: Path) -> None:
    errors, warnings = findings(tmp_path, good(exec_args="--preload --workers 3 app:app"))
    assert errors == ""
    assert "--preload" in warnings and "OLD code" in warnings


def test_preload_abbreviation_is_recognised(tmp_path: Path) -> None:
    _, warnings = findings(tmp_path, good(exec_args="--pre app:app"))
    assert "--preload" in warnings


def test_preload_is_seen_behind_an_argv0_prefix(tmp_path: Path) -> None:
    """With '@', the word after the executable is argv[0], not a Gunicorn argument."""
    text = good().replace(f"ExecStart={GUNICORN} --workers 3 app:app", f"ExecStart=@{GUNICORN} web --preload app:app")
    errors, warnings = findings(tmp_path, text)
    assert errors == "" and "--preload" in warnings


@pytest.mark.parametrize("mode", ["process", "none"])
def test_kill_mode_process_warns(tmp_path: Path, mode: str) -> None:
    _, warnings = findings(tmp_path, good().replace("KillMode=mixed", f"KillMode={mode}"))
    assert f"KillMode={mode}" in warnings and "KillMode=mixed" in warnings


def test_daemon_under_notify_is_an_error(tmp_path: Path) -> None:
    errors, _ = findings(tmp_path, good(exec_args="--daemon app:app"))
    assert "--daemon under Type=notify" in errors


def test_forking_without_daemon_is_an_error(tmp_path: Path) -> None:
    errors, _ = findings(tmp_path, good().replace("Type=notify", "Type=forking"))
    assert "Type=forking but Gunicorn stays in the foreground" in errors


def test_type_simple_warns_to_use_notify(tmp_path: Path) -> None:
    errors, warnings = findings(tmp_path, good().replace("Type=notify\n", ""))
    assert errors == ""
    assert "Type=simple" in warnings and "Type=notify" in warnings


def test_notify_access_none_is_an_error(tmp_path: Path) -> None:
    errors, _ = findings(tmp_path, good("NotifyAccess=none\n"))
    assert "NotifyAccess=none" in errors


def test_missing_exec_reload_and_working_directory_warn(tmp_path: Path) -> None:
    text = good().replace("ExecReload=/bin/kill -s HUP $MAINPID\n", "").replace(f"WorkingDirectory={HERE}\n", "")
    _, warnings = findings(tmp_path, text)
    assert "no ExecReload=" in warnings
    assert "no WorkingDirectory=" in warnings
    _, warnings = findings(tmp_path, text.replace(" app:app", f" --chdir {HERE} app:app"))
    assert "no WorkingDirectory=" not in warnings


def test_secret_in_environment_warns_without_printing_it(tmp_path: Path) -> None:
    _, warnings = findings(tmp_path, good('Environment="DB_PASSWORD=hunter2" MODE=prod\n'))
    assert "DB_PASSWORD" in warnings and "EnvironmentFile=" in warnings
    assert "hunter2" not in warnings and "MODE" not in warnings


def test_template_leftover_is_an_error(tmp_path: Path) -> None:
    errors, _ = findings(tmp_path, good("Environment=APP_ENV={{ env }}\n"))
    assert "template placeholder '{{ env }}'" in errors


def test_gunicorn_refusing_its_command_line_is_an_error(tmp_path: Path) -> None:
    errors, _ = findings(tmp_path, good(exec_args="--preload=true app:app"))
    assert "Gunicorn would refuse its command line" in errors and "--preload takes no value" in errors


def test_non_gunicorn_unit_gets_no_gunicorn_advice(tmp_path: Path) -> None:
    report = verify_unit(unit(tmp_path, "[Service]\nExecStart=/bin/sleep 1000\n"))
    assert report.errors == () and report.warnings == ()


def test_missing_user_group_and_working_directory_on_this_host_warn(tmp_path: Path) -> None:
    text = good("User=no-such-user-xyz\nGroup=no-such-group-xyz\n").replace(
        f"WorkingDirectory={HERE}", f"WorkingDirectory={tmp_path}/missing"
    )
    errors, warnings = findings(tmp_path, text)
    assert errors == ""
    assert "User=no-such-user-xyz does not exist on this host" in warnings and "217/USER" in warnings
    assert "Group=no-such-group-xyz does not exist" in warnings
    assert f"WorkingDirectory={tmp_path}/missing does not exist" in warnings
    _, warnings = findings(tmp_path, good("User=root\nGroup=root\n"))
    assert warnings == ""
    _, warnings = findings(tmp_path, good("User=no-such-user-xyz\nDynamicUser=yes\n"))
    assert "does not exist" not in warnings


SERVER_ONLY = (
    "[Service]\nType=notify\nUser=no-such-user-here\nWorkingDirectory=/srv/only-on-the-server\n"
    "ExecStart=/srv/only-on-the-server/venv/bin/gunicorn app:app\nExecReload=/bin/kill -s HUP $MAINPID\n"
)


def test_offline_does_not_look_for_what_only_the_server_has(tmp_path: Path) -> None:
    path = unit(tmp_path, SERVER_ONLY)
    here = verify_unit(path)
    assert any("is not executable" in e for e in here.errors)
    assert any("no-such-user-here does not exist on this host" in w for w in here.warnings)
    offline = verify_unit(path, offline=True)
    assert offline.errors == (), offline.errors
    assert not any("on this host" in w or "is not executable" in w for w in offline.warnings)


def test_offline_still_refuses_what_is_wrong_in_the_file_itself(tmp_path: Path) -> None:
    report = verify_unit(unit(tmp_path, SERVER_ONLY + "NotifyAccess=none\n"), offline=True)
    assert any("NotifyAccess=none" in e for e in report.errors)
    report = verify_unit(unit(tmp_path, SERVER_ONLY.replace("[Service]", "[Service"), name="b.service"), offline=True)
    assert not report.ok
