"""The pure decisions of a deploy: how to switch (restart / reload / nothing) and the plan."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from unitctl import preimport
from unitctl.deploy import ApplyRequest, Plan, PlanInput, Switch, choose_action, make_plan
from unitctl.deploy.model import DEFAULT_STRATEGY, choose_rollback_action
from unitctl.errors import InputError, NotGunicornError, UnitSyntaxError, UsageError
from unitctl.gitrepo import RollbackTarget
from unitctl.systemd.fake import failed_state, running_state


@pytest.mark.parametrize(
    ("strategy", "unit_changed", "code_changed", "preload", "active", "expected"),
    [
        ("restart", False, False, False, True, "none"),
        ("auto", False, False, True, True, "none"),
        ("restart", False, True, False, True, "restart"),
        ("auto", False, True, False, True, "reload"),
        ("auto", False, True, True, True, "restart"),  # preload: HUP keeps the old app
        ("auto", True, True, False, True, "restart"),  # unit changed: reload would not apply it
        ("reload", True, False, False, True, "restart"),
        ("reload", False, True, False, True, "reload"),
        ("auto", False, True, False, False, "restart"),  # not running: start it
        ("restart", False, False, False, False, "restart"),
    ],
)
def test_choose_action(
    strategy: str, unit_changed: bool, code_changed: bool, preload: bool, active: bool, expected: str
) -> None:
    action, why = choose_action(
        Switch(
            strategy,  # type: ignore[arg-type]
            unit_changed=unit_changed,
            code_changed=code_changed,
            preload=preload,
            was_active=active,
        )
    )
    assert action == expected
    assert why


@pytest.mark.parametrize(
    ("strategy", "master_alive", "reloadable", "expected"),
    [
        ("auto", True, True, "reload"),
        ("auto", False, True, "restart"),  # MainPID 0: no master to send a HUP to
        ("auto", True, False, "restart"),  # no ExecReload=: 'systemctl reload' would fail
        ("reload", False, True, "restart"),
    ],
)
def test_a_hup_needs_a_master_and_an_exec_reload(strategy: str, master_alive: bool, reloadable: bool,
                                                 expected: str) -> None:  # fmt: skip
    action, _ = choose_action(
        Switch(
            strategy,  # type: ignore[arg-type]
            unit_changed=False,
            code_changed=True,
            preload=False,
            was_active=True,
            master_alive=master_alive,
            reloadable=reloadable,
        )
    )
    assert action == expected


def test_auto_is_the_default_strategy() -> None:
    assert ApplyRequest(unit="app.service").strategy == DEFAULT_STRATEGY == "auto"


def test_the_plan_reloads_only_a_running_master_with_exec_reload() -> None:
    code = {"deployed_rev": "a" * 40, "rollback": RollbackTarget("a" * 40, "history")}
    assert plan_of(**code).action == "reload"
    assert plan_of(**code, state=running_state("app.service", main_pid=0)).action == "restart"
    assert plan_of(**code, reloadable=False).action == "restart"
    assert plan_of(**code, preload=True).action == "restart"


_ALIVE = running_state("app.service", main_pid=7, invocation_id="a" * 32)


@pytest.mark.parametrize(
    ("strategy", "restored", "preload", "reloadable", "state", "switched", "expected", "why"),
    [
        ("auto", False, False, True, _ALIVE, "a" * 32, "reload", "master is alive"),
        ("reload", False, False, True, _ALIVE, "a" * 32, "reload", "graceful reload"),
        ("restart", False, False, True, _ALIVE, "a" * 32, "restart", "--strategy restart"),
        ("auto", True, False, True, _ALIVE, "a" * 32, "restart", "unit file was put back"),
        ("auto", False, True, True, _ALIVE, "a" * 32, "restart", "preloads"),
        ("auto", False, False, False, _ALIVE, "a" * 32, "restart", "no ExecReload="),
        ("auto", False, False, True, _ALIVE, "b" * 32, "restart", "started again"),
        ("auto", False, False, True, _ALIVE, None, "restart", "started again"),  # an older journal
        ("auto", False, False, True, failed_state("app.service"), "a" * 32, "restart", "is failed/failed"),
        ("auto", False, False, True, running_state("app.service", main_pid=0, invocation_id="a" * 32), "a" * 32,
         "restart", "MainPID 0"),
    ],
)  # fmt: skip
def test_choose_rollback_action(
    strategy: str, restored: bool, preload: bool, reloadable: bool, state: Any, switched: str | None, expected: str,
    why: str,
) -> None:  # fmt: skip
    action, text = choose_rollback_action(
        strategy,  # type: ignore[arg-type]
        unit_restored=restored,
        preload=preload,
        reloadable=reloadable,
        state=state,
        switched_invocation=switched,
    )
    assert (action, why in text) == (expected, True), text


def test_explicit_reload_with_preload_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--preload"):
        choose_action(Switch("reload", unit_changed=False, code_changed=True, preload=True, was_active=True))


def plan_of(**given: Any) -> Plan:
    """Return make_plan's plan for app.service with everything not given set to an already-deployed release."""
    args: dict[str, Any] = {
        "unit": "app.service",
        "unit_path": Path("/etc/systemd/system/app.service"),
        "installed": b"[Service]\n",
        "candidate": b"[Service]\n",
        "state": running_state("app.service"),
        "deployed_rev": "b" * 40,
        "rollback": RollbackTarget("b" * 40, "history"),
        "to_rev": "b" * 40,
        "preload": False,
        "strategy": "auto",
    }
    return make_plan(PlanInput(**{**args, **given}))


def test_plan_of_a_first_deploy() -> None:
    plan = plan_of(
        installed=None,
        state=failed_state("app.service"),
        deployed_rev=None,
        rollback=RollbackTarget("a" * 40, "HEAD~1"),
        strategy="restart",
    )
    assert plan.first_deploy and plan.unit_changed and plan.code_changed and plan.changes
    assert (plan.from_rev, plan.rollback_source, plan.action) == ("a" * 40, "HEAD~1", "restart")
    assert plan.installed_sha256 is None


def test_plan_when_everything_is_deployed() -> None:
    plan = plan_of()
    assert not plan.changes and not plan.unit_changed and not plan.code_changed
    assert plan.installed_sha256 == plan.candidate_sha256


def test_an_apply_without_a_repo_after_a_deploy_from_one_changes_no_code() -> None:
    # No --repo: unitctl deploys no revision, whatever revision the history recorded stays where it is.
    plan = plan_of(to_rev=None, deployed_rev="b" * 40)
    assert not plan.code_changed and not plan.changes
    assert (plan.action, plan.to_rev) == ("none", None)
    unit_only = plan_of(to_rev=None, candidate=b"[Service]\nUser=app\n")
    assert unit_only.unit_changed and not unit_only.code_changed and unit_only.action == "restart"


def test_a_unit_systemd_has_not_loaded_gets_a_daemon_reload_and_a_restart() -> None:
    stale = dataclasses.replace(running_state("app.service"), need_daemon_reload=True)
    plan = plan_of(state=stale)
    assert not plan.unit_changed and plan.daemon_reload and plan.action == "restart"
    assert not plan_of().daemon_reload


def test_no_socket_candidate_leaves_an_installed_socket_alone() -> None:
    socket = {"socket_path": Path("/etc/systemd/system/app.socket"), "socket_installed": b"[Socket]\n"}
    plan = plan_of(**socket, socket_candidate=None)
    assert (plan.socket_changed, plan.socket_path, plan.daemon_reload, plan.changes) == (False, None, False, False)
    changed = plan_of(**socket, socket_candidate=b"[Socket]\nListenStream=/run/app.sock\n")
    assert changed.socket_changed and changed.daemon_reload and changed.action == "restart"


def test_unknown_running_code_counts_as_changed() -> None:
    plan = plan_of(deployed_rev=None, rollback=RollbackTarget("a" * 40, "ORIG_HEAD"), preload=True)
    assert plan.code_changed and plan.action == "restart"


# -- the pre-import check is built from the candidate unit (plus installed drop-ins) ------------------

SERVICE = """\
[Service]
User=app
WorkingDirectory=/srv/app
Environment="A=1 2" B=\\x41
EnvironmentFile=/etc/app.env
EnvironmentFile=-/etc/app.local
ExecStart={exec}
"""


def spec_for(exec_line: str, tmp_path: Path, *, pre_import: str | None = None, dropin: str | None = None) -> Any:
    if dropin is not None:
        d = tmp_path / "app.service.d"
        d.mkdir(exist_ok=True)
        (d / "10-override.conf").write_text(dropin)
    return preimport.check_spec(
        SERVICE.format(exec=exec_line), unit="app.service", unit_dir=tmp_path, pre_import=pre_import
    )


def test_check_config_goes_right_after_the_gunicorn_executable(tmp_path: Path) -> None:
    spec = spec_for("/venv/bin/gunicorn -w 4 --bind 127.0.0.1:8000 app.wsgi:application", tmp_path)
    assert list(spec.argv) == ["/venv/bin/gunicorn", "--check-config", "-w", "4", "--bind", "127.0.0.1:8000",
                               "app.wsgi:application"]  # fmt: skip
    assert (spec.user, spec.group, spec.cwd) == ("app", None, "/srv/app")
    assert dict(spec.env) == {"A": "1 2", "B": "A"}  # systemd's quoting and C escapes
    assert list(spec.env_files) == [("/etc/app.env", False), ("/etc/app.local", True)]


def test_python_m_gunicorn_and_poetry_run(tmp_path: Path) -> None:
    spec = spec_for("/venv/bin/python3 -m gunicorn app:app", tmp_path)
    assert list(spec.argv) == ["/venv/bin/python3", "-m", "gunicorn", "--check-config", "app:app"]
    spec = spec_for("/usr/bin/poetry run gunicorn app:app", tmp_path)
    assert list(spec.argv) == ["/usr/bin/poetry", "run", "gunicorn", "--check-config", "app:app"]


def test_pre_import_module_var_with_python_m(tmp_path: Path) -> None:
    spec = spec_for("/venv/bin/python3 -m gunicorn app:app", tmp_path, pre_import="app.wsgi:application")
    assert spec.argv[0] == "/venv/bin/python3" and spec.argv[1] == "-c"
    assert "import_module('app.wsgi')" in spec.argv[2] and "'application'" in spec.argv[2]


def test_dropins_of_the_installed_unit_apply(tmp_path: Path) -> None:
    spec = spec_for(
        "/venv/bin/gunicorn app:app",
        tmp_path,
        dropin="[Service]\nEnvironment=C=3\nUser=\nExecStart=\nExecStart=/venv/bin/gunicorn -w 2 other:app\n",
    )
    assert list(spec.argv) == ["/venv/bin/gunicorn", "--check-config", "-w", "2", "other:app"]
    assert dict(spec.env) == {"A": "1 2", "B": "A", "C": "3"} and spec.user is None


def test_an_empty_assignment_in_a_dropin_resets_the_environment(tmp_path: Path) -> None:
    spec = spec_for(
        "/venv/bin/gunicorn app:app",
        tmp_path,
        dropin='[Service]\nEnvironment=\nEnvironment="C=3 4" A=5\nEnvironmentFile=\nEnvironmentFile=-/etc/other.env\n',
    )
    assert dict(spec.env) == {"C": "3 4", "A": "5"}
    assert list(spec.env_files) == [("/etc/other.env", True)]


def test_a_broken_dropin_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(UnitSyntaxError) as info:
        spec_for("/venv/bin/gunicorn app:app", tmp_path, dropin="[Service]\nUser=app\n[Service\n")
    assert str(info.value).startswith(f"{tmp_path}/app.service.d/10-override.conf:3: invalid section header")


def test_an_unreadable_dropin_is_an_input_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "app.service.d").mkdir()
    # /proc/self/mem is a regular file whose read fails (EIO) even for root, unlike a chmod 000 file.
    (tmp_path / "app.service.d" / "20-mem.conf").symlink_to("/proc/self/mem")
    with pytest.raises(InputError, match="cannot read drop-in .*20-mem.conf: Input/output error"):
        spec_for("/venv/bin/gunicorn app:app", tmp_path)


def test_a_dropin_that_only_resets_execstart_leaves_nothing_to_check(tmp_path: Path) -> None:
    with pytest.raises(NotGunicornError, match="app.service has no ExecStart="):
        spec_for("/venv/bin/gunicorn app:app", tmp_path, dropin="[Service]\nExecStart=\n")


def test_a_unit_that_does_not_run_gunicorn_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotGunicornError, match="uWSGI|Uvicorn"):
        spec_for("/venv/bin/uvicorn app:app", tmp_path)


def test_preload_is_read_from_the_command_line(tmp_path: Path) -> None:
    text = SERVICE.format(exec="/venv/bin/gunicorn --preload app:app")
    assert preimport.service_view(text, unit="app.service", unit_dir=tmp_path).preload
    text = SERVICE.format(exec="/venv/bin/gunicorn app:app")
    assert not preimport.service_view(text, unit="app.service", unit_dir=tmp_path).preload


def test_dropins_are_found_where_systemd_finds_them(tmp_path: Path) -> None:
    """Across the load path and in prefix dirs, in file-name order; a same-named file in /etc masks /run's."""
    files = {
        "run/systemd/system/my-app.service.d/20-run.conf": "[Service]\nEnvironment=A=run\n",
        "etc/systemd/system/my-app.service.d/30-etc.conf": "[Service]\nEnvironment=B=etc\n",
        "usr/lib/systemd/system/my-.service.d/10-prefix.conf": "[Service]\nEnvironment=C=prefix\n",
        "run/systemd/system/my-app.service.d/30-etc.conf": "[Service]\nEnvironment=B=masked\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = preimport._dropins("my-app.service", Path("/etc/systemd/system"), root=tmp_path)
    assert [d.path for d in found] == [
        "/usr/lib/systemd/system/my-.service.d/10-prefix.conf",
        "/run/systemd/system/my-app.service.d/20-run.conf",
        "/etc/systemd/system/my-app.service.d/30-etc.conf",
    ]


def test_the_check_expands_variables_as_systemd_does_for_the_service(tmp_path: Path) -> None:
    """${APP_MODULE} in ExecStart= is expanded from the service's environment; ':' turns that off, as in systemd."""
    spec = spec_for("/venv/bin/gunicorn --bind 127.0.0.1:${PORT} ${APP_MODULE}", tmp_path)
    assert spec.expand_variables
    assert list(spec.argv)[-3:] == ["--bind", "127.0.0.1:${PORT}", "${APP_MODULE}"]
    assert not spec_for(":/venv/bin/gunicorn ${APP_MODULE}", tmp_path).expand_variables
    assert not spec_for("/venv/bin/gunicorn app:app", tmp_path, pre_import="app:app").expand_variables


def test_an_argv0_prefix_checks_the_units_own_gunicorn(tmp_path: Path) -> None:
    """With '@', the executable is the first word and the second is argv[0]: check the venv's gunicorn, not PATH's."""
    spec = spec_for("@/venv/bin/gunicorn web -w 2 app:app", tmp_path)
    assert list(spec.argv) == ["/venv/bin/gunicorn", "--check-config", "-w", "2", "app:app"]


def test_preload_from_a_dropin_counts(tmp_path: Path) -> None:
    """A drop-in's GUNICORN_CMD_ARGS=--preload makes a HUP keep the old code: apply must know to restart."""
    d = tmp_path / "app.service.d"
    d.mkdir()
    (d / "10-preload.conf").write_text('[Service]\nEnvironment="GUNICORN_CMD_ARGS=--preload"\n')
    text = SERVICE.format(exec="/venv/bin/gunicorn app:app")
    assert preimport.service_view(text, unit="app.service", unit_dir=tmp_path).preload


@pytest.mark.parametrize("bad", ["app", "app:", ":app", "app:a.b", "a b:c", "-x:y"])
def test_pre_import_target_must_be_module_var(bad: str) -> None:
    with pytest.raises(UsageError, match="MODULE:VAR"):
        preimport.parse_app_spec(bad)
