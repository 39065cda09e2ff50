"""The sandbox is a real systemd: units load, Gunicorn starts and serves, failures fail, the host is untouched."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from unitctl import sandbox as sandbox_mod
from unitctl.errors import SandboxError

pytestmark = pytest.mark.systemd

APP = textwrap.dedent(
    """\
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello from the sandbox\\n"]
    """
)

BROKEN_APP = "from pydantic import BaseSettings  # moved to pydantic-settings in v2\n"

FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end='')"


def _unit(venv_bin: Path, workdir: str, port: int, module: str) -> str:
    return textwrap.dedent(
        f"""\
        [Unit]
        Description=sandbox test app {module}

        [Service]
        Type=notify
        NotifyAccess=main
        WorkingDirectory={workdir}
        ExecStart={venv_bin}/gunicorn --no-control-socket --workers 2 --bind 127.0.0.1:{port} {module}:app
        ExecReload=/bin/kill -s HUP $MAINPID
        KillMode=mixed
        """
    )


def test_gunicorn_unit_starts_and_serves_on_loopback(box: sandbox_mod.Sandbox, venv_bin: Path) -> None:
    box.write_file("/srv/sbx-ok/okapp.py", APP)
    box.write_file("/etc/systemd/system/sbx-ok.service", _unit(venv_bin, "/srv/sbx-ok", 8101, "okapp"))
    box.systemctl("daemon-reload", check=True)
    box.systemctl("start", "sbx-ok.service", check=True)

    props = box.unit_properties("sbx-ok.service", "ActiveState", "SubState", "MainPID")
    assert props["ActiveState"] == "active", props
    assert props["SubState"] == "running", props
    assert int(props["MainPID"]) > 0

    # Workers import the app after READY=1: retry briefly until the first answer.
    deadline = time.monotonic() + 10
    while True:
        out = box.run([str(venv_bin / "python"), "-c", FETCH, "http://127.0.0.1:8101/"])
        if out.ok or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert out.stdout == "hello from the sandbox\n", out


def test_unit_whose_app_fails_to_import_ends_failed(box: sandbox_mod.Sandbox, venv_bin: Path) -> None:
    box.write_file("/srv/sbx-bad/badapp.py", BROKEN_APP)
    box.write_file("/etc/systemd/system/sbx-bad.service", _unit(venv_bin, "/srv/sbx-bad", 8102, "badapp"))
    box.systemctl("daemon-reload", check=True)
    # Type=notify: the start itself succeeds, because Gunicorn says READY=1 before any worker imports the app.
    box.systemctl("start", "sbx-bad.service")
    state = box.wait_for("sbx-bad.service", ["failed"], timeout=30)
    assert state == "failed"
    journal = box.run(["journalctl", "-u", "sbx-bad.service", "-o", "cat", "--no-pager"]).stdout
    assert "BaseSettings" in journal or "pydantic" in journal, journal


def test_host_is_untouched(box: sandbox_mod.Sandbox) -> None:
    marker = f"unitctl-host-check-{uuid.uuid4().hex}.service"
    box.write_file(f"/etc/systemd/system/{marker}", "[Service]\nExecStart=/bin/true\n")
    box.run(["sh", "-c", "echo container > /srv/written-inside"], check=True)  # a file written by a process inside
    assert box.exists(f"/etc/systemd/system/{marker}")
    assert not Path("/etc/systemd/system", marker).exists()
    assert not Path("/srv/written-inside").exists()


def test_host_tmp_survives_a_boot() -> None:
    """Booting the container must not run the host's tmpfiles clean-up over the host's /tmp."""
    marker = Path("/tmp") / f"unitctl-tmp-marker-{uuid.uuid4().hex}"
    marker.write_text("keep me")
    try:
        with sandbox_mod.booted() as box:
            assert box.run(["systemctl", "is-system-running"]).stdout.strip() in ("running", "degraded")
        assert marker.read_text() == "keep me"
    finally:
        marker.unlink(missing_ok=True)


SCRIPT = textwrap.dedent(
    """\
    import sys, time
    from unitctl import sandbox
    mode = sys.argv[1]
    with sandbox.booted() as box:
        print("booted", box.name, flush=True)
        if mode == "raise":
            raise RuntimeError("a failing test")
        time.sleep(120)
    """
)


@pytest.mark.parametrize("how", ["raise", "SIGINT", "SIGTERM"])
def test_teardown_leaves_nothing_behind(how: str, tmp_path: Path) -> None:
    """A failing test, Ctrl-C and SIGTERM all end with no mounts and no nspawn process left."""
    script = tmp_path / "boot.py"
    script.write_text(SCRIPT)
    with subprocess.Popen(  # the with block closes the pipes (warnings are errors)
        [sys.executable, str(script), "raise" if how == "raise" else "wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("booted"), (line, proc.stderr.read() if proc.stderr else "")
        name = line.split()[1]
        base = sandbox_mod.SANDBOX_BASE / name
        assert any(m.startswith(f"mount {base}") for m in sandbox_mod.leftovers())
        if how != "raise":
            proc.send_signal(getattr(signal, how))
        proc.wait(timeout=60)
    assert proc.returncode != 0
    # Other sandboxes (the session's) may be up: only this one must be gone.
    assert [m for m in sandbox_mod.leftovers() if name in m] == []
    assert not base.exists()
    assert not Path("/run/systemd/nspawn/propagate", name).exists()


def test_refuses_clearly_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxError, match="needs root"):
        sandbox_mod.check_host()


def test_refuses_clearly_without_nspawn(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr("unitctl.sandbox.shutil.which", lambda n: None if n == "systemd-nspawn" else real_which(n))
    with pytest.raises(SandboxError, match="systemd-container"):
        sandbox_mod.check_host()


def test_a_sandbox_whose_owner_was_killed_is_torn_down_by_the_next_boot() -> None:
    """kill -9 (or a lost CI runner) runs no teardown: the container lives on in its own session, the overlay of /
    stays mounted. The next booted() reaps it, because its owner file names a process that is gone."""
    with subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("booted"), (line, proc.stderr.read() if proc.stderr else "")
        name = line.split()[1]
        proc.kill()
        proc.wait(timeout=30)
    mine = [m for m in sandbox_mod.leftovers() if name in m]
    assert any(m.startswith("mount") for m in mine) and any(m.startswith("process") for m in mine), mine
    assert name in sandbox_mod.reap_stale()
    assert [m for m in sandbox_mod.leftovers() if name in m] == []
    assert not (sandbox_mod.SANDBOX_BASE / name).exists()


def test_an_old_unowned_sandbox_directory_is_removed_and_a_new_one_left_alone() -> None:
    """A directory without an owner file is one being set up right now, or one an older unitctl left behind."""
    old = sandbox_mod.SANDBOX_BASE / f"unitctl-old-{uuid.uuid4().hex[:6]}"
    new = sandbox_mod.SANDBOX_BASE / f"unitctl-new-{uuid.uuid4().hex[:6]}"
    try:
        for base in (old, new):
            (base / "root" / "srv" / "app").mkdir(parents=True)
        past = time.time() - sandbox_mod.UNOWNED_GRACE_SECONDS - 5
        os.utime(old, (past, past))
        reaped = sandbox_mod.reap_stale()
        assert old.name in reaped and not old.exists()
        assert new.name not in reaped and new.exists()
    finally:
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(new, ignore_errors=True)
