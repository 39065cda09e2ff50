"""The guard against real Gunicorn units in the sandbox: not ready, ready, broken apps decided fast."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from unitctl.sandbox import Sandbox

pytestmark = pytest.mark.systemd

# Runs inside the container: restart the unit like apply does, then guard it; print the outcome as JSON.
GUARD = textwrap.dedent(
    """\
    import json, sys, time
    from unitctl.errors import SystemdError
    from unitctl.guard import Rules, Senses, watch
    from unitctl.probe import Probe
    from unitctl.systemd import get_backend
    req = json.loads(sys.argv[1])
    backend = get_backend(req["backend"])
    started = time.monotonic()
    restart_error = None
    try:
        backend.restart(req["unit"])
    except SystemdError as exc:
        restart_error = str(exc)
    baseline = backend.state(req["unit"])
    ticks = []
    with Probe(req["url"], timeout=1.0) as probe:
        # fail_after 0: these tests are about the timeout and the unit's state, not the early verdict.
        outcome = watch(backend, req["unit"], Rules(req["timeout"], interval=0.2, fail_after=0),
                        Senses(probe, on_tick=lambda e, t, p: ticks.append(e)), baseline=baseline)
    last = outcome.last_probe
    print(json.dumps({
        "ready": outcome.ready, "kind": outcome.kind, "reason": outcome.reason, "elapsed": outcome.elapsed,
        "probes": outcome.probes, "wall": time.monotonic() - started, "restart_error": restart_error,
        "last_status": last.status_code if last else None, "last_error": last.error if last else None,
        "ticks": len(ticks), "backend": backend.name,
    }))
    """
)

GATED_APP = textwrap.dedent(
    """\
    import os
    HERE = os.path.dirname(os.path.abspath(__file__))
    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/redirect":
            start_response("302 Found", [("Location", "http://elsewhere.invalid/login")])
            return [b""]
        if path == "/health/ready" and not os.path.exists(os.path.join(HERE, "ready")):
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"warming up\\n"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\\n"]
    """
)
BROKEN_APP = "import no_such_module_unitctl_test  # the release forgot a dependency\n"


def install(box: Sandbox, venv_bin: Path, app: str, *, bind: str, extra: str = "") -> tuple[str, str]:
    name = f"guard-{uuid.uuid4().hex[:8]}"
    box.write_file(f"/srv/{name}/app.py", app)
    box.write_file(
        f"/etc/systemd/system/{name}.service",
        textwrap.dedent(
            f"""\
            [Service]
            Type=notify
            ExecStart={venv_bin}/gunicorn --bind {bind} --workers 2 --chdir /srv/{name} app:app
            ExecReload=/bin/kill -s HUP $MAINPID
            KillMode=mixed
            TimeoutStopSec=10
            """
        )
        + extra,
    )
    box.systemctl("daemon-reload", check=True)
    return f"{name}.service", f"/srv/{name}"


def guard(box: Sandbox, venv_bin: Path, backend: str, unit: str, url: str, timeout: float) -> dict[str, Any]:
    box.write_file("/srv/unitctl-guard.py", GUARD)
    req = json.dumps({"backend": backend, "unit": unit, "url": url, "timeout": timeout})
    res = box.run([str(venv_bin / "python"), "/srv/unitctl-guard.py", req], timeout=timeout + 120)
    assert res.ok, res.stderr
    out: dict[str, Any] = json.loads(res.stdout)
    assert out["backend"] == backend
    return out


@pytest.mark.parametrize("backend", ["systemctl", "dbus"])
def test_not_ready_until_the_file_exists_then_ready(box: Sandbox, venv_bin: Path, backend: str) -> None:
    unit, home = install(box, venv_bin, GATED_APP, bind="127.0.0.1:8201")
    url = "http://127.0.0.1:8201/health/ready"
    out = guard(box, venv_bin, backend, unit, url, timeout=3)
    assert out["restart_error"] is None
    assert (out["ready"], out["kind"]) == (False, "timeout"), out
    assert out["last_status"] == 503 and "HTTP 503" in out["reason"] and "within 3s" in out["reason"]
    assert 3 <= out["elapsed"] < 5 and out["probes"] >= 5 and out["ticks"] == out["probes"]

    box.write_file(f"{home}/ready", "")
    out = guard(box, venv_bin, backend, unit, url, timeout=20)
    assert (out["ready"], out["kind"]) == (True, "ready"), out
    assert out["probes"] >= 3 and out["last_status"] == 200 and out["elapsed"] < 10


@pytest.mark.parametrize("backend", ["systemctl", "dbus"])
def test_app_that_cannot_import_is_decided_long_before_the_timeout(box: Sandbox, venv_bin: Path, backend: str) -> None:
    unit, _ = install(box, venv_bin, BROKEN_APP, bind="127.0.0.1:8202")
    out = guard(box, venv_bin, backend, unit, "http://127.0.0.1:8202/health/ready", timeout=60)
    assert not out["ready"] and out["kind"] in ("unit-failed", "main-exited"), out
    assert out["elapsed"] < 15, out
    if out["kind"] == "unit-failed":
        assert "Result=exit-code" in out["reason"]
    assert unit in out["reason"]


def test_restart_loop_is_decided_fast(box: Sandbox, venv_bin: Path) -> None:
    unit, _ = install(box, venv_bin, BROKEN_APP, bind="127.0.0.1:8203", extra="Restart=on-failure\nRestartSec=200ms\n")
    out = guard(box, venv_bin, "dbus", unit, "http://127.0.0.1:8203/health/ready", timeout=60)
    # The first reads may land between the crash and systemd scheduling the restart (active, MainPID 0: the
    # main process is gone): the same truth, decided from the unit's state alone, just as fast.
    assert not out["ready"] and out["kind"] in ("restart-loop", "main-exited"), out
    assert out["elapsed"] < 15
    box.systemctl("stop", unit)


def test_unix_socket_probe_reaches_ready(box: Sandbox, venv_bin: Path) -> None:
    sock = f"/run/guard-{uuid.uuid4().hex[:8]}.sock"
    unit, home = install(box, venv_bin, GATED_APP, bind=f"unix:{sock}")
    box.write_file(f"{home}/ready", "")
    out = guard(box, venv_bin, "systemctl", unit, f"unix:{sock}:/health/ready", timeout=20)
    assert out["ready"] and out["last_status"] == 200, out


def test_redirect_is_not_followed_and_not_ready(box: Sandbox, venv_bin: Path) -> None:
    unit, _ = install(box, venv_bin, GATED_APP, bind="127.0.0.1:8204")
    out = guard(box, venv_bin, "systemctl", unit, "http://127.0.0.1:8204/redirect", timeout=2)
    assert out["kind"] == "timeout" and out["last_status"] == 302, out
    assert "redirect to http://elsewhere.invalid/login (not followed)" in out["reason"]


def test_nothing_listening_reports_connection_refused(box: Sandbox, venv_bin: Path) -> None:
    unit, _ = install(box, venv_bin, GATED_APP, bind="127.0.0.1:8205")
    out = guard(box, venv_bin, "dbus", unit, "http://127.0.0.1:8299/health/ready", timeout=2)
    assert out["kind"] == "timeout" and out["last_status"] is None
    assert "connection refused" in out["last_error"] and "connection refused" in out["reason"]


@pytest.mark.parametrize("backend", ["systemctl", "dbus"])
def test_url_answered_by_another_service_is_not_ready(box: Sandbox, venv_bin: Path, backend: str) -> None:
    # Another service holds the port and answers 200; the guarded Type=simple Gunicorn is active while it retries
    # the bind ("Connection in use", five times a second apart), then exits. Never "ready" (issue 9).
    other, other_home = install(box, venv_bin, GATED_APP, bind="127.0.0.1:8206")
    box.write_file(f"{other_home}/ready", "")
    box.systemctl("start", other, check=True)
    unit, home = install(box, venv_bin, GATED_APP, bind="127.0.0.1:8206")
    box.write_file(f"{home}/ready", "")
    path = box.host_path(f"/etc/systemd/system/{unit}")
    path.write_text(path.read_text().replace("Type=notify", "Type=simple"))
    box.systemctl("daemon-reload", check=True)
    out = guard(box, venv_bin, backend, unit, "http://127.0.0.1:8206/health/ready", timeout=30)
    assert out["restart_error"] is None  # Type=simple: the restart itself "succeeded"
    assert not out["ready"] and out["kind"] in ("unit-failed", "main-exited"), out
    assert out["last_status"] == 200  # the other service did answer, and was not believed


def test_url_answered_by_another_service_times_out_naming_both_halves(box: Sandbox, venv_bin: Path) -> None:
    other, other_home = install(box, venv_bin, GATED_APP, bind="127.0.0.1:8207")
    box.write_file(f"{other_home}/ready", "")
    box.systemctl("start", other, check=True)
    unit, home = install(box, venv_bin, GATED_APP, bind="127.0.0.1:8207")
    path = box.host_path(f"/etc/systemd/system/{unit}")
    path.write_text(path.read_text().replace("Type=notify", "Type=simple"))
    box.systemctl("daemon-reload", check=True)
    out = guard(box, venv_bin, "dbus", unit, "http://127.0.0.1:8207/health/ready", timeout=2)
    assert (out["ready"], out["kind"]) == (False, "timeout"), out
    assert "the URL answered ready (HTTP 200)" in out["reason"] and "listens on no socket" in out["reason"], out
