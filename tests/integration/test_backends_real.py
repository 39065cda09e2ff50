"""Both real backends against the sandbox's systemd, with real Gunicorn units (code runs inside the container)."""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from unitctl.sandbox import Sandbox

pytestmark = pytest.mark.systemd

BACKENDS = ["systemctl", "dbus"]

# Runs inside the container: performs the calls on one backend and prints the results as JSON.
RPC = textwrap.dedent(
    """\
    import dataclasses, json, sys
    from unitctl.systemd import get_backend
    from unitctl.systemd.base import TransientSpec
    req = json.loads(sys.argv[1])
    backend = get_backend(req["backend"])
    out = []
    for op, args, kwargs in req["calls"]:
        try:
            if op == "run_transient":
                result = backend.run_transient(TransientSpec(**args[0]))
            else:
                result = getattr(backend, op)(*args, **kwargs)
            if dataclasses.is_dataclass(result):
                result = dataclasses.asdict(result)
            out.append({"ok": result, "backend": backend.name})
        except Exception as exc:
            out.append({"error": type(exc).__name__, "message": str(exc), "backend": backend.name,
                        "exit_code": int(getattr(exc, "exit_code", -1))})
    print(json.dumps(out))
    """
)

APP = textwrap.dedent(
    """\
    import os
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"pid {os.getpid()}\\n".encode()]
    """
)
BROKEN_APP = "raise RuntimeError('unitctl-test: the app cannot import (boom)')\n"


class Remote:
    """Call a backend inside the sandbox."""

    def __init__(self, box: Sandbox, venv_bin: Path, backend: str) -> None:
        self.box, self.python, self.backend = box, str(venv_bin / "python"), backend
        box.write_file("/srv/unitctl-rpc.py", RPC)

    def calls(self, *calls: tuple[str, list[Any], dict[str, Any]]) -> list[dict[str, Any]]:
        req = json.dumps({"backend": self.backend, "calls": [list(c) for c in calls]})
        res = self.box.run([self.python, "/srv/unitctl-rpc.py", req], timeout=180)
        assert res.ok, res.stderr
        out: list[dict[str, Any]] = json.loads(res.stdout)
        if self.backend != "auto":
            assert all(o["backend"] == self.backend for o in out), out
        return out

    def __call__(self, op: str, *args: Any, **kwargs: Any) -> Any:
        [out] = self.calls((op, list(args), kwargs))
        if "error" in out:
            raise AssertionError(f"{op} raised {out['error']}: {out['message']}")
        return out["ok"]

    def error(self, op: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        [out] = self.calls((op, list(args), kwargs))
        assert "error" in out, f"{op} did not fail: {out}"
        return out


def install_app(box: Sandbox, venv_bin: Path, *, broken: bool = False, port: int) -> str:
    """Write a Gunicorn app and its Type=notify unit into the sandbox; return the unit name."""
    name = f"gapp-{uuid.uuid4().hex[:8]}"
    box.write_file(f"/srv/{name}/app.py", BROKEN_APP if broken else APP)
    unit = textwrap.dedent(
        f"""\
        [Unit]
        Description=unitctl backend test app {name}

        [Service]
        Type=notify
        ExecStart={venv_bin}/gunicorn --bind 127.0.0.1:{port} --workers 2 --chdir /srv/{name} app:app
        ExecReload=/bin/kill -s HUP $MAINPID
        KillMode=mixed
        TimeoutStopSec=10
        """
    )
    box.write_file(f"/etc/systemd/system/{name}.service", unit)
    box.systemctl("daemon-reload", check=True)
    return f"{name}.service"


def workers(box: Sandbox, pid: int) -> set[int]:
    res = box.run(["pgrep", "-P", str(pid)])
    return {int(p) for p in res.stdout.split()}


def wait_until(pred: Any, timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(params=BACKENDS)
def remote(request: pytest.FixtureRequest, box: Sandbox, venv_bin: Path) -> Remote:
    return Remote(box, venv_bin, request.param)


def test_dbus_is_running_in_the_sandbox_and_auto_picks_it(box: Sandbox, venv_bin: Path) -> None:
    assert box.systemctl("is-active", "dbus.service").stdout.strip() == "active"
    assert Remote(box, venv_bin, "auto")("state", "dbus.service")["active_state"] == "active"
    res = box.run(
        [str(venv_bin / "python"), "-c", "from unitctl.systemd import get_backend; print(get_backend().name)"]
    )
    assert res.stdout.strip() == "dbus", res.stderr


def test_state_restart_reload_of_a_gunicorn_unit(remote: Remote, box: Sandbox, venv_bin: Path) -> None:
    unit = install_app(box, venv_bin, port=8101)
    remote("start", unit)
    st = remote("state", unit)
    assert (st["load_state"], st["active_state"], st["sub_state"]) == ("loaded", "active", "running")
    assert st["main_pid"] > 1 and len(st["invocation_id"]) == 32
    assert st["fragment_path"] == f"/etc/systemd/system/{unit}"
    assert st["unit_file_state"] == "static"  # no [Install] section
    assert st["main_pid"] == int(box.unit_properties(unit, "MainPID")["MainPID"])

    remote("restart", unit)
    after = remote("state", unit)
    assert after["active_state"] == "active" and after["main_pid"] not in (0, st["main_pid"])
    assert after["invocation_id"] != st["invocation_id"]

    old_workers = wait_until(
        lambda: workers(box, after["main_pid"]) if len(workers(box, after["main_pid"])) == 2 else None
    )
    remote("reload", unit)
    reloaded = remote("state", unit)
    assert reloaded["main_pid"] == after["main_pid"] and reloaded["invocation_id"] == after["invocation_id"]
    # HUP: Gunicorn's master stays, its workers are replaced.
    wait_until(
        lambda: (w := workers(box, after["main_pid"])) and len(w) == 2 and not (w & old_workers),
        what="Gunicorn to replace its workers after HUP",
    )
    remote("stop", unit)
    assert remote("state", unit)["active_state"] == "inactive"


def test_daemon_reload_clears_need_daemon_reload(remote: Remote, box: Sandbox, venv_bin: Path) -> None:
    unit = install_app(box, venv_bin, port=8102)
    remote("start", unit)
    path = f"/etc/systemd/system/{unit}"
    box.write_file(path, box.read_file(path).decode().replace("KillMode=mixed", "KillMode=mixed\nRestartSec=2"))
    # systemd compares file mtimes at a coarse granularity; make sure the edit is seen as newer.
    box.run(["touch", "-d", "+2 seconds", path], check=True)
    assert remote("state", unit)["need_daemon_reload"] is True
    remote("daemon_reload")
    assert remote("state", unit)["need_daemon_reload"] is False


def test_failing_unit_reset_failed_and_journal_has_the_traceback(remote: Remote, box: Sandbox, venv_bin: Path) -> None:
    unit = install_app(box, venv_bin, broken=True, port=8103)
    # READY=1 comes before the workers import the app: the start itself may well succeed.
    remote.calls(("start", [unit], {}))
    st = wait_until(lambda: (s := remote("state", unit))["active_state"] == "failed" and s, what=f"{unit} to fail")
    assert st["result"] == "exit-code" and st["exec_main_status"] != 0 and st["main_pid"] == 0
    lines = remote("journal", unit, invocation_id=st["invocation_id"], lines=200)
    assert any("unitctl-test: the app cannot import (boom)" in line for line in lines), lines
    assert any("Traceback" in line for line in lines)
    assert remote("journal", unit, invocation_id="0" * 32, lines=50) == []
    remote("reset_failed", unit)
    after = remote("state", unit)
    assert after["active_state"] == "inactive" and after["result"] == "success"


def test_restart_of_a_unit_that_fails_at_once_raises_with_the_result(
    remote: Remote, box: Sandbox, venv_bin: Path
) -> None:
    name = f"bad-{uuid.uuid4().hex[:8]}.service"
    box.write_file(
        f"/etc/systemd/system/{name}",
        f"[Service]\nType=notify\nExecStart={venv_bin}/python -c 'raise SystemExit(3)'\n",
    )
    box.systemctl("daemon-reload", check=True)
    err = remote.error("restart", name)
    assert err["error"] == "JobFailedError" and err["exit_code"] == 3
    assert f"restart of {name} failed" in err["message"]
    assert "Result=exit-code, ExecMainStatus=3" in err["message"]
    assert "\n" not in err["message"]


def test_missing_unit(remote: Remote) -> None:
    st = remote("state", "no-such-unit-here.service")
    assert st["load_state"] == "not-found" and st["active_state"] == "inactive"
    assert (st["fragment_path"], st["dropin_paths"], st["unit_file_state"]) == ("", [], "")
    err = remote.error("restart", "no-such-unit-here.service")
    assert "no-such-unit-here.service" in err["message"] and "not found" in err["message"]


def test_invalid_unit_name_is_refused_before_any_call(remote: Remote) -> None:
    err = remote.error("restart", "evil;rm -rf /")
    assert err["error"] == "UsageError" and "not a valid systemd unit name" in err["message"]


def test_run_transient_applies_the_services_identity(remote: Remote, box: Sandbox) -> None:
    box.run(["mkdir", "-p", "/srv/tr-cwd"], check=True)
    box.write_file("/srv/tr-cwd/app.env", "FROM_FILE=file value\n# comment\nSHARED=from-file\n")
    spec = {
        "argv": [
            "sh",
            "-c",
            'id -un; id -gn; pwd; echo "A=$A"; echo "F=$FROM_FILE"; echo "S=$SHARED"; echo "$1"',
            "sh",
            "$HOME literally",
        ],
        "user": "nobody",
        "group": "nogroup",
        "cwd": "/srv/tr-cwd",
        "env": {"A": "x y $HOME", "SHARED": "from-env"},
        "env_files": [["/srv/tr-cwd/app.env", False], ["/srv/tr-cwd/missing.env", True]],
        "timeout": 30,
    }
    res = remote("run_transient", spec)
    assert res["returncode"] == 0, res
    assert res["output"].splitlines() == [
        "nobody",
        "nogroup",
        "/srv/tr-cwd",
        "A=x y $HOME",
        "F=file value",
        "S=from-file",  # EnvironmentFile= is applied after Environment=, as in a real unit
        "$HOME literally",
    ]


def test_run_transient_failure_returns_status_and_output(remote: Remote) -> None:
    res = remote("run_transient", {"argv": ["sh", "-c", "echo out; echo 'Traceback: nope' >&2; exit 4"]})
    assert res["returncode"] == 4 and res["result"] == "exit-code"
    assert res["output"].splitlines() == ["out", "Traceback: nope"]
    killed = remote("run_transient", {"argv": ["sleep", "30"], "timeout": 1})
    assert killed["result"] == "timeout" and killed["returncode"] == 128 + 15
    no_user = remote("run_transient", {"argv": ["true"], "user": "no-such-user-x"})
    assert no_user["returncode"] == 217 and "USER" in no_user["output"]


def test_run_transient_expands_variables_only_when_asked(remote: Remote) -> None:
    """A unit's own ExecStart words expand ${VAR} from the environment; anything else reaches the command as is."""
    base = {"argv": ["/bin/echo", "${GREETING}", "$$LITERAL"], "env": {"GREETING": "hello"}}
    expanded = remote("run_transient", {**base, "expand_variables": True})
    assert expanded["returncode"] == 0 and expanded["output"].strip() == "hello $LITERAL", expanded
    literal = remote("run_transient", base)
    assert literal["returncode"] == 0 and literal["output"].strip() == "${GREETING} $$LITERAL", literal


def test_run_transient_refuses_what_cannot_run(remote: Remote, box: Sandbox) -> None:
    err = remote.error("run_transient", {"argv": ["/no/such/binary"]})
    assert err["error"] == "SystemdError" and "no such executable" in err["message"]
    err = remote.error("run_transient", {"argv": ["true"], "env_files": [["/srv/absent.env", False]]})
    assert "could not start: Result=resources" in err["message"]
    leftovers = box.systemctl("list-units", "--all", "--plain", "--no-legend", "unitctl-run-*").stdout
    assert leftovers.strip() == ""


def test_failing_reload_raises_and_the_service_keeps_running(remote: Remote, box: Sandbox, venv_bin: Path) -> None:
    unit = install_app(box, venv_bin, port=8104)
    path = f"/etc/systemd/system/{unit}"
    box.write_file(path, box.read_file(path).decode().replace("/bin/kill -s HUP $MAINPID", "/bin/false"))
    box.systemctl("daemon-reload", check=True)
    remote("start", unit)
    pid = remote("state", unit)["main_pid"]
    err = remote.error("reload", unit)
    assert err["error"] == "JobFailedError" and f"reload of {unit} failed" in err["message"]
    st = remote("state", unit)
    assert st["active_state"] == "active" and st["main_pid"] == pid
