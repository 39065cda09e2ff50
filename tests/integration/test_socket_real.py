"""Socket activation for real: ``apply --render`` installs NAME.service and NAME.socket, a changed socket is
restarted, a rollback (or the recovery of a killed deploy) puts both files back; real systemd, Gunicorn, git.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from apphelpers import APP_USER, http_get
from test_apply_real import BACKENDS, Deploy, Paused

from unitctl.sandbox import Sandbox

pytestmark = pytest.mark.systemd


def render_args(d: Deploy, *ports: int) -> list[str]:
    """Return the apply options that render the app's unit, listening on 127.0.0.1:PORT for each port."""
    binds = [a for port in ports for a in ("--bind", f"127.0.0.1:{port}")]
    return [
        "--render", "--app", "app:app", "--workers", "2", *binds, "--working-dir", d.repo.path,
        "--venv", str(d.venv_bin.parent), "--user", APP_USER, "--group", APP_USER, "--env", f"APP_DB={d.repo.db}",
    ]  # fmt: skip


def socket_path(d: Deploy) -> str:
    return f"/etc/systemd/system/{d.name}.socket"


def served_on(d: Deploy, port: int) -> str:
    status, body = http_get(d.box, f"http://127.0.0.1:{port}/")
    return body.strip() if status == 200 else f"HTTP {status}: {body}"


@BACKENDS
def test_apply_render_installs_the_socket_and_a_rollback_restores_both_units(
    box: Sandbox, venv_bin: Path, backend: str
) -> None:
    d = Deploy(box, venv_bin, backend)
    other = d.port + 1000
    d.repo.release("v1")
    res = d.apply(*render_args(d, d.port))
    assert res.returncode == 0, res.stderr
    assert f"wrote {socket_path(d)}" in res.stderr
    socket_v1 = box.read_file(socket_path(d))
    assert f"\nListenStream=127.0.0.1:{d.port}\n".encode() in socket_v1
    # "running": its service has the fds (it says "listening" while no service runs); enabled for the next boot.
    props = box.unit_properties(f"{d.name}.socket", "ActiveState", "SubState", "UnitFileState")
    assert (props["ActiveState"], props["SubState"], props["UnitFileState"]) == ("active", "running", "enabled")
    # Gunicorn runs without --bind: it serves on the fds systemd passed it.
    assert "--bind" not in box.unit_properties(d.unit, "ExecStart")["ExecStart"]
    assert d.served() == "release v1"

    # A changed socket (a second address): restarted, so systemd listens on both.
    d.repo.release("v2")
    res = d.apply(*render_args(d, d.port, other))
    assert res.returncode == 0, res.stderr
    assert f"restarted {d.name}.socket" in res.stderr
    socket_v2 = box.read_file(socket_path(d))
    unit_v2 = box.read_file(d.unit_path)
    assert served_on(d, other) == "release v2" and d.served() == "release v2"

    # A bad release that changes the socket again: the rollback puts both files back and listens as before.
    d.repo.release("v3", table="items_v3")
    # --no-canary: this is about the rollback after the switch (a canary refuses v3 first: test_canary_real.py).
    res = d.apply(*render_args(d, d.port), "--no-canary", timeout=4)
    assert res.returncode == 4, res.stderr
    assert box.read_file(socket_path(d)) == socket_v2 and box.read_file(d.unit_path) == unit_v2
    assert served_on(d, other) == "release v2" and d.served() == "release v2" and d.ready()
    assert socket_v2 != socket_v1
    steps = [p["name"] for p in d.history()[-1]["phases"]]
    assert steps[-2:] == ["rollback", "rollback-guard"]


@pytest.mark.parametrize(
    ("first", "step"),
    [(True, "daemon-reload"), (False, "socket-write"), (False, "daemon-reload"), (False, "socket-restart")],
    ids=["first-deploy", "changed-at-socket-write", "changed-at-daemon-reload", "changed-at-socket-restart"],
)
def test_a_deploy_killed_around_the_socket_write_is_undone_by_the_next_command(
    box: Sandbox, venv_bin: Path, first: bool, step: str
) -> None:
    d = Deploy(box, venv_bin)
    other = d.port + 1000
    before: bytes | None = None
    if not first:
        d.repo.release("v1")
        assert d.apply(*render_args(d, d.port)).returncode == 0
        before = box.read_file(socket_path(d))
    d.repo.release("v2")
    run = Paused(d, step, *render_args(d, d.port, other))  # killed right after announcing the step
    written = box.exists(socket_path(d)) and b"127.0.0.1:%d" % other in box.read_file(socket_path(d))
    assert written == (step != "socket-write")
    run.signal("KILL")
    run.resume()
    assert run.wait() != 0
    status = d.unitctl("status", d.name, "--history-dir", d.hist)
    assert status.returncode == 0, status.stderr
    assert "finishing its rollback first" in status.stderr
    if first:
        assert not box.exists(socket_path(d)) and not box.exists(d.unit_path)
        assert box.unit_properties(f"{d.name}.socket", "LoadState")["LoadState"] == "not-found"
    else:
        assert box.read_file(socket_path(d)) == before
        assert box.unit_properties(f"{d.name}.socket", "NeedDaemonReload")["NeedDaemonReload"] == "no"
        assert d.served() == "release v1" and d.ready()
        assert served_on(d, other).startswith("HTTP 0")  # the new address is closed again
    assert d.history()[-1]["outcome"] == "interrupted"


SCRIPT = Path(__file__).resolve().parents[2] / "update_systemd_unit.sh"


def test_the_update_script_deploys_a_socket_activated_service(box: Sandbox, venv_bin: Path) -> None:
    """First deploy from the pair 'unitctl render -o' wrote, then releases: the socket stays open throughout."""
    d = Deploy(box, venv_bin)
    rendered = f"{d.repo.root}/rendered/{d.unit}"
    box.run(["mkdir", "-p", f"{d.repo.root}/rendered"], check=True)
    out = box.run([str(venv_bin / "unitctl"), "render", "--name", d.name, *render_args(d, d.port)[1:], "-o", rendered])
    assert out.returncode == 0, out.stderr

    def script(rev: str, *extra: str) -> int:
        res = box.run(
            ["bash", str(SCRIPT), d.name, "--repo", d.repo.path, "--rev", rev, "--ready-url", f"{d.url}/health/ready",
             "--ready-timeout", "6", "--unitctl", str(venv_bin / "unitctl"), f"--history-dir={d.hist}", *extra],
            timeout=120,
        )  # fmt: skip
        return res.returncode

    v1 = d.repo.release("v1")
    assert script(v1, "--unit-file", rendered) == 0
    assert box.read_file(socket_path(d)) == box.read_file(f"{d.repo.root}/rendered/{d.name}.socket")
    assert d.served() == "release v1"
    socket_since = box.unit_properties(f"{d.name}.socket", "ActiveEnterTimestampMonotonic")
    socket_file = box.read_file(socket_path(d))

    v2 = d.repo.release("v2")
    assert script(v2) == 0
    assert d.served() == "release v2"
    v3 = d.repo.release("v3", table="items_v3")  # never ready
    assert script(v3) == 3  # the defaults: its canary refuses it, the live service is not touched
    assert d.served() == "release v2" and d.repo.head() == v2
    assert script(v3, "--no-canary") == 4  # without a canary: switched, then rolled back through the socket
    assert d.served() == "release v2" and d.ready() and d.repo.head() == v2
    # The socket was never restarted nor rewritten: its listening fd stayed open across both deploys.
    assert box.unit_properties(f"{d.name}.socket", "ActiveEnterTimestampMonotonic") == socket_since
    assert box.read_file(socket_path(d)) == socket_file


LOADGEN = Path(__file__).resolve().parents[2] / "bench" / "loadgen.py"
# Crashes only in the live service (as a production-only setting would): every check unitctl runs before the
# switch, in a transient unit of its own (unitctl-*), sees it import and serve. In the service each worker dies
# 0.2 s after its import: Gunicorn halts, and the socket starts the service again on the next queued connection.
LATE_CRASH = (
    "import os, threading\n"
    "if 'unitctl-' not in open('/proc/self/cgroup').read():\n"
    "    threading.Timer(0.2, lambda: os._exit(3)).start()\n"
    "RELEASE = 'v2-crash'\nTABLE = 'items'\nREADY_AFTER = 0.0\n"
)


def test_a_late_crash_with_socket_activation_is_rolled_back_and_queued_requests_are_answered(
    box: Sandbox, venv_bin: Path
) -> None:
    d = Deploy(box, venv_bin)
    v1 = d.repo.release("v1")
    assert d.apply(*render_args(d, d.port)).returncode == 0
    d.repo.release("v2-crash", extra_files={"release.py": LATE_CRASH})
    stop, out = f"{d.repo.root}/load-stop", f"{d.repo.root}/load.json"
    load = box.popen(["python3", str(LOADGEN), f"{d.url}/", stop, out, "--clients", "3", "--max-seconds", "120"])
    try:
        while not box.exists(out + ".tmp") and http_get(box, f"{d.url}/")[0] != 200:
            pass  # the load runs against v1 first
        res = d.apply(*render_args(d, d.port), timeout=10)
    finally:
        box.write_file(stop, "")
        load.wait(timeout=120)
    assert res.returncode == 4, res.stderr
    assert d.repo.head() == v1 and d.served() == "release v1" and d.ready()
    records = json.loads(box.read_file(out))["records"]
    failed = [r for r in records if r[2] != "200"]
    # A dying worker drops the connection it holds: that is the crash, before any verdict. A socket that stopped
    # listening would refuse or time out instead: none.
    dropped = ("RemoteDisconnected", "ConnectionResetError", "IncompleteRead", "BrokenPipeError")
    assert [r for r in failed if r[2] not in dropped] == [], failed[:5]
    releases = [r[3] for r in records]
    assert "v2-crash" in releases, "the load did not reach the crashing release"
    # A v2-crash worker still alive when the first v1 worker answers may answer once more (three clients'
    # records interleave; a CI run saw it). After its last answer every request (those queued during the
    # rollback included) was answered, by v1; the crash dropped at most the few connections its workers held.
    back = len(releases) - releases[::-1].index("v2-crash")
    assert all(r[2] == "200" and r[3] == "v1" for r in records[back:]), [r for r in records[back:] if r[3] != "v1"]
    assert len(records) - back > 0 and len(failed) <= 3 * 5  # 3 clients, at most one connection each per crash


def test_a_failed_first_deploy_stops_disables_and_removes_its_socket(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.repo.release("v1", table="items_v1")  # imports, never ready: its table is missing
    # --no-canary: this is about undoing a first deploy after its switch (a canary refuses v1 before it).
    res = d.apply(*render_args(d, d.port), "--no-canary", timeout=4)
    assert res.returncode == 4, res.stderr
    assert "first deploy was undone" in res.stderr
    assert not box.exists(socket_path(d)) and not box.exists(d.unit_path)
    assert not box.exists(f"/etc/systemd/system/sockets.target.wants/{d.name}.socket")  # enabled, then disabled
    assert http_get(box, f"{d.url}/")[0] == 0  # nothing listens on the address any more
