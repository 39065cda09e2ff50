"""What unitctl verify says matches what a real systemd (in the sandbox) and a real Gunicorn do."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from unitctl import sandbox as sandbox_mod

pytestmark = pytest.mark.systemd

FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end='')"


def _app(version: str) -> str:
    return textwrap.dedent(
        f"""\
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"{version}"]
        """
    )


def _unit(venv_bin: Path, workdir: str, port: int, extra_args: str) -> str:
    return textwrap.dedent(
        f"""\
        [Service]
        Type=notify
        WorkingDirectory={workdir}
        ExecStart={venv_bin}/gunicorn --no-control-socket --workers 2 --bind 127.0.0.1:{port} {extra_args} codeapp:app
        ExecReload=/bin/kill -s HUP $MAINPID
        KillMode=mixed
        """
    )


def _verify(box: sandbox_mod.Sandbox, venv_bin: Path, path: str) -> sandbox_mod.Result:
    return box.run([str(venv_bin / "unitctl"), "verify", path])


def _fetch_until(box: sandbox_mod.Sandbox, url: str, want: str, timeout: float = 10) -> str:
    """Fetch ``url`` until it answers ``want`` or ``timeout`` passes; return the last answer."""
    python = str(Path(sys.prefix) / "bin" / "python")
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        result = box.run([python, "-c", FETCH, url])
        body = result.stdout if result.ok else ""
        if body == want:
            break
        time.sleep(0.3)
    return body


# "v2" is longer than "v1": a same-size rewrite within one second would hit the stale-.pyc trap instead.
V2 = "v2, new code"


@pytest.mark.parametrize(("preload", "after_reload"), [(True, "v1"), (False, V2)])
def test_preload_warning_is_true_reload_keeps_old_code(
    box: sandbox_mod.Sandbox, venv_bin: Path, preload: bool, after_reload: str
) -> None:
    name = f"vtest-preload-{'on' if preload else 'off'}"
    port = 8221 if preload else 8222
    workdir = f"/srv/{name}"
    box.write_file(f"{workdir}/codeapp.py", _app("v1"))
    path = f"/etc/systemd/system/{name}.service"
    box.write_file(path, _unit(venv_bin, workdir, port, "--preload" if preload else ""))

    verified = _verify(box, venv_bin, path)
    assert verified.returncode == 0, verified
    assert ("--preload" in verified.stdout) is preload, verified.stdout

    box.systemctl("daemon-reload", check=True)
    assert box.systemctl("start", f"{name}.service").ok
    url = f"http://127.0.0.1:{port}/"
    assert _fetch_until(box, url, "v1") == "v1"
    box.write_file(f"{workdir}/codeapp.py", _app(V2))
    box.systemctl("reload", f"{name}.service", check=True)
    # Give the new workers time to boot; with --preload they fork from the master's old import.
    assert _fetch_until(box, url, after_reload) == after_reload
    if preload:
        time.sleep(2)
        assert _fetch_until(box, url, V2, timeout=1) == "v1"


def test_what_verify_refuses_systemd_refuses_to_load(box: sandbox_mod.Sandbox, venv_bin: Path) -> None:
    path = "/etc/systemd/system/vtest-broken.service"
    box.write_file(path, f"[Service\nExecStart={venv_bin}/gunicorn app:app\n")
    verified = _verify(box, venv_bin, path)
    assert verified.returncode == 3, verified
    assert "Invalid section header" in verified.stdout

    box.systemctl("daemon-reload", check=True)
    state = box.unit_properties("vtest-broken.service", "LoadState")["LoadState"]
    assert state in ("error", "bad-setting"), state


def test_daemon_error_is_true_systemd_loses_the_service(box: sandbox_mod.Sandbox, venv_bin: Path) -> None:
    name = "vtest-daemon"
    workdir = f"/srv/{name}"
    box.write_file(f"{workdir}/codeapp.py", _app("v1"))
    path = f"/etc/systemd/system/{name}.service"
    box.write_file(path, _unit(venv_bin, workdir, 8223, "--daemon").replace("Type=notify", "Type=exec"))
    verified = _verify(box, venv_bin, path)
    assert verified.returncode == 3, verified
    assert "--daemon under Type=exec" in verified.stdout

    box.systemctl("daemon-reload", check=True)
    box.systemctl("start", f"{name}.service")
    # The main process exits at once: systemd no longer tracks a running Gunicorn.
    state = box.wait_for(f"{name}.service", ["inactive", "failed"], timeout=10)
    assert state in ("inactive", "failed")
    # ... and stopping the unit killed the daemonized Gunicorn: nothing serves any more.
    assert _fetch_until(box, "http://127.0.0.1:8223/", "v1", timeout=2) == ""
