"""`unitctl apply --guarded` for real: unitctl runs inside the sandbox against a real systemd, a real
Gunicorn app in a real git repository, whose readiness depends on a real (sqlite) database.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from apphelpers import APP_PY, DeployedApp, http_get

from unitctl.sandbox import Result, Sandbox

pytestmark = pytest.mark.systemd


class Deploy(DeployedApp):
    """One app under test for ``unitctl apply --guarded``, optionally driven through one systemd backend."""

    def __init__(self, box: Sandbox, venv_bin: Path, backend: str | None = None) -> None:
        super().__init__(box, venv_bin, prefix="shop")
        self.backend = backend  # --backend for every apply (None: auto)

    def argv(self, *args: str, timeout: float = 30, ready_url: str | None = None) -> list[str]:
        return self.unitctl_argv(
            "apply", self.name, "--guarded",
            "--repo", self.repo.path, "--ready-url", ready_url or f"{self.url}/health/ready",
            "--ready-timeout", str(timeout), "--ready-interval", "0.2", "--history-dir", self.hist,
            *(["--backend", self.backend] if self.backend else []), *args,
        )  # fmt: skip

    def apply(self, *args: str, timeout: float = 30, ready_url: str | None = None) -> Result:
        return self.box.run(self.argv(*args, timeout=timeout, ready_url=ready_url), timeout=timeout * 3 + 120)

    def lock_holder(self) -> dict[str, Any]:
        """Return who holds the unit's lock (/run/lock/unitctl is the container's own tmpfs: read it inside)."""
        res = self.box.run(["cat", f"/run/lock/unitctl/{self.unit}.lock"], check=True)
        holder: dict[str, Any] = json.loads(res.stdout)
        return holder

    def unit_file(self, label: str, **kw: Any) -> str:
        return self.repo.write_unit_file(self.repo.unit(self.venv_bin, port=self.port, **kw), label)

    def history(self) -> list[dict[str, Any]]:
        res = self.unitctl("history", self.name, "--json", "--history-dir", self.hist)
        assert res.ok, res.stderr
        data: list[dict[str, Any]] = json.loads(res.stdout)["result"]["records"]
        return data

    def served(self) -> str:
        status, body = http_get(self.box, f"{self.url}/")
        return body.strip() if status == 200 else f"HTTP {status}: {body}"

    def ready(self) -> bool:
        return http_get(self.box, f"{self.url}/health/ready")[0] == 200

    def main_pid(self) -> int:
        return int(self.box.unit_properties(self.unit, "MainPID")["MainPID"])

    def worker_count(self) -> int:
        """Count the Gunicorn workers: the child processes of the unit's main process."""
        pid = self.main_pid()
        assert pid > 0, f"{self.unit} has no main process"
        out = self.box.run(["ps", "--ppid", str(pid), "-o", "pid="], check=True).stdout
        return len(out.split())

    def first_release(self) -> str:
        """Commit v1 and deploy it (a first deploy); return its hash."""
        v1 = self.repo.release("v1")
        res = self.apply("--unit-file", self.unit_file("v1"))
        assert res.returncode == 0, res.stderr
        return v1

    def second_release(self) -> str:
        v2 = self.repo.release("v2")
        res = self.apply()
        assert res.returncode == 0, res.stderr
        assert self.served() == "release v2"
        return v2


BACKENDS = pytest.mark.parametrize("backend", ["dbus", "systemctl"])


@BACKENDS
def test_first_deploy_then_a_good_release(box: Sandbox, venv_bin: Path, backend: str) -> None:
    d = Deploy(box, venv_bin, backend)
    v1 = d.first_release()
    assert d.served() == "release v1" and d.ready()
    assert box.read_file(d.unit_path) == box.read_file(f"{d.repo.root}/units/v1/{d.unit}")
    v2 = d.repo.release("v2")
    res = d.apply("--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["outcome"], out["exit_code"], out["command"], out["unit"]) == ("deployed", 0, "apply", d.unit)
    assert out["result"]["record"]["to_rev"] == v2 and out["result"]["record"]["from_rev"] == v1
    assert d.served() == "release v2"
    records = d.history()
    assert [(r["outcome"], r["to_rev"]) for r in records] == [("ok", v1), ("ok", v2)]
    assert records[1]["rollback_source"] == "history"
    phases = [p["name"] for p in records[1]["phases"]]
    assert phases == ["capture", "ready-url", "verify", "pre-import", "canary", "switch", "guard"]
    # The backend asked for is the one that drove the deploy (an explicit one never falls back).
    assert all(r["phases"][0]["detail"].endswith(f"active/running (backend {backend})") for r in records[1:])
    # Phase lines with timings on stderr, one result line on stdout.
    assert "guard" in res.stderr and "ok" in res.stderr
    status = d.unitctl("status", d.name, "--history-dir", d.hist, "--json")
    assert status.returncode == 0, status.stderr
    st = json.loads(status.stdout)["result"]
    assert st["deployed_rev"] == v2 and st["ready"] is True and st["state"]["active_state"] == "active"


def test_variables_in_execstart_are_checked_as_systemd_expands_them(box: Sandbox, venv_bin: Path) -> None:
    """${APP_MODULE} in ExecStart= names the app for the service; the pre-import check must import that app."""
    d = Deploy(box, venv_bin)
    d.repo.release("v1")
    text = d.repo.unit(venv_bin, port=d.port, env={"APP_MODULE": "app:app"})
    assert text.count("app:app\n") == 1
    text = text.replace("app:app\n", "${APP_MODULE}\n")
    res = d.apply("--unit-file", d.repo.write_unit_file(text, "v1-var"))
    assert res.returncode == 0, res.stderr
    assert d.served() == "release v1"
    # A variable that names no importable app is refused before anything runs, like any import failure.
    bad = text.replace('"APP_MODULE=app:app"', '"APP_MODULE=nosuchmodule:app"')
    res = d.apply("--unit-file", d.repo.write_unit_file(bad, "v1-badvar"))
    assert res.returncode == 3, res.stderr
    assert "does not import" in res.stderr and "nosuchmodule" in res.stderr
    assert d.served() == "release v1"


def test_import_broken_release_is_refused_before_the_restart(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    v2 = d.second_release()
    pid = d.main_pid()
    d.repo.release("v3", broken_import=True)
    res = d.apply()
    assert res.returncode == 3, res.stderr
    assert "does not import" in res.stderr and "cannot import name 'BaseSettings'" in res.stderr
    assert len(res.stderr.strip().splitlines()[-1]) < 400  # one line
    assert d.main_pid() == pid  # never restarted
    assert d.served() == "release v2"
    assert d.repo.head() == v2  # a later restart of the old process cannot load the broken code
    last = d.history()[-1]
    assert last["outcome"] == "refused" and last["exit_code"] == 3
    assert "BaseSettings" in last["output"] and "Traceback" in last["output"]


def test_wrong_ready_url_port_is_refused_before_anything_changes(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    d.second_release()
    pid = d.main_pid()
    unit_before = box.read_file(d.unit_path)
    v3 = d.repo.release("v3")  # the pulled release: HEAD is at v3, v2 runs
    wrong = f"http://127.0.0.1:{d.port + 1}/health/ready"  # a typo'd port: nothing listens there
    res = d.apply(ready_url=wrong)
    assert res.returncode == 3, res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert line == (
        f"unitctl: error: {wrong} does not answer while {d.unit} is active (connection refused); "
        "check --ready-url: host, port, path or socket (nothing was changed)"
    )
    assert d.main_pid() == pid and d.repo.head() == v3 and box.read_file(d.unit_path) == unit_before
    assert d.served() == "release v2"
    last = d.history()[-1]
    assert (last["outcome"], last["exit_code"]) == ("refused", 3)
    assert [p["name"] for p in last["phases"]] == ["capture", "ready-url"]
    # With the right URL the same release deploys: the refusal left nothing behind.
    assert d.apply().returncode == 0 and d.served() == "release v3"


@BACKENDS
def test_never_ready_release_is_rolled_back(box: Sandbox, venv_bin: Path, backend: str) -> None:
    d = Deploy(box, venv_bin, backend)
    d.first_release()
    v2 = d.second_release()
    unit_before = box.read_file(d.unit_path)
    v4 = d.repo.release("v4", table="items_v4")  # imports fine; its table was never migrated
    # --no-canary: this is about the guard after the switch (a canary refuses it first: test_canary_real.py).
    res = d.apply("--no-canary", timeout=4)
    assert res.returncode == 4, res.stderr
    # The early verdict: ten 503 answers from the new release, long before the 4 s timeout.
    assert "rolled back" in res.stderr and "10 consecutive not-ready answers" in res.stderr
    assert d.repo.head() == v2 and box.read_file(d.unit_path) == unit_before
    assert d.served() == "release v2" and d.ready()
    last = d.history()[-1]
    assert (last["outcome"], last["exit_code"], last["to_rev"], last["from_rev"]) == ("rolled-back", 4, v4, v2)
    assert "items_v4" in last["reason"]
    names = [p["name"] for p in last["phases"]]
    assert names[-3:] == ["guard", "rollback", "rollback-guard"]
    assert last["phases"][0]["detail"].endswith(f"(backend {backend})")


def test_bad_unit_change_is_rolled_back_byte_identical(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    d.second_release()
    unit_before = box.read_file(d.unit_path)
    mode_before = box.host_path(d.unit_path).stat().st_mode
    # 192.0.2.1 (TEST-NET-1) is not an address of this host: Gunicorn cannot bind it.
    res = d.apply("--unit-file", d.unit_file("v5", bind=f"192.0.2.1:{d.port}"))
    assert res.returncode == 4, res.stderr
    assert box.read_file(d.unit_path) == unit_before
    assert box.host_path(d.unit_path).stat().st_mode == mode_before
    assert d.served() == "release v2" and d.ready()
    assert box.unit_properties(d.unit, "NeedDaemonReload")["NeedDaemonReload"] == "no"
    last = d.history()[-1]
    assert last["outcome"] == "rolled-back" and last["unit_sha256"] != last["candidate_sha256"]
    assert any("192.0.2.1" in line for line in last["journal"]), last["journal"]


def test_both_releases_broken_needs_a_human(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    v2 = d.second_release()
    # The database goes away: the new release and the previous one both cannot become ready.
    box.run(["mv", d.repo.db, d.repo.db + ".away"], check=True)
    d.repo.release("v4", table="items_v4")
    res = d.apply("--no-canary", timeout=3)  # the switch happens: the rollback is what is tested
    assert res.returncode == 5, res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert "ROLLBACK FAILED" in line and "previous release is not ready either" in line
    assert f"journalctl -u {d.unit}" in line and v2[:12] in line and "a human is needed" in line
    assert d.repo.head() == v2  # the code of the previous release is in place for whoever fixes it
    assert d.history()[-1]["outcome"] == "rollback-failed"
    box.run(["mv", d.repo.db + ".away", d.repo.db], check=True)
    assert d.ready()


def test_fast_failure_is_rolled_back_long_before_the_timeout(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    d.second_release()
    d.repo.release("v3", broken_import=True)
    started = time.monotonic()
    res = d.apply("--no-pre-import", "--no-canary", timeout=120)
    wall = time.monotonic() - started
    assert res.returncode == 4, res.stderr
    last = d.history()[-1]
    guard = next(p for p in last["phases"] if p["name"] == "guard")
    assert not guard["ok"] and guard["seconds"] < 30, guard
    assert wall < 90
    assert any("BaseSettings" in line for line in last["journal"]), last["journal"]
    assert d.served() == "release v2"


def test_two_applies_at_once_one_is_refused(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    d.second_release()
    v3 = d.repo.release("v3", ready_after=4.0)
    first = box.popen(d.argv("--fail-after", "0"))  # v3 answers 503 while it warms up: a good release
    try:
        _wait_for_line(first, "switch", timeout=60)
        second = d.apply()
        assert second.returncode == 3, second.stderr
        holder = d.lock_holder()
        assert f"locked by pid {holder['pid']} since" in second.stderr
        assert first.wait(timeout=120) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert d.served() == "release v3" and d.repo.head() == v3
    # The refused attempt is recorded and changed nothing.
    assert [r["outcome"] for r in d.history()] == ["ok", "ok", "refused", "ok"]


def test_sigterm_during_the_guard_ends_on_the_previous_healthy_release(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    v2 = d.second_release()
    d.repo.release("v3", ready_after=600.0)  # would never be ready within the test
    # --no-canary: a canary would refuse v3 first; --fail-after 0: its 503s must not end the guard early.
    proc = box.popen(d.argv("--no-canary", "--fail-after", "0", timeout=120))
    try:
        _wait_for_line(proc, "switch", timeout=60)
        time.sleep(0.5)  # inside the guard now
        holder = d.lock_holder()
        # The pid as the container sees it: signal unitctl itself, from inside.
        box.run(["kill", "-TERM", str(holder["pid"])], check=True)
        code = proc.wait(timeout=120)
        stderr = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 4, stderr
    assert "interrupted by SIGTERM" in stderr
    assert d.repo.head() == v2 and d.served() == "release v2" and d.ready()
    last = d.history()[-1]
    assert last["outcome"] == "interrupted" and last["exit_code"] == 4


def test_dirty_tree_is_refused_nothing_changed(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    v2 = d.second_release()
    pid = d.main_pid()
    unit_before = box.read_file(d.unit_path)
    box.write_file(f"{d.repo.path}/release.py", "RELEASE = 'hotfix'\nTABLE = 'items'\nREADY_AFTER = 0.0\n")
    res = d.apply("--unit-file", d.unit_file("v6", workers=3))
    assert res.returncode == 3, res.stderr
    assert "modified tracked files (release.py)" in res.stderr
    assert d.main_pid() == pid and box.read_file(d.unit_path) == unit_before and d.repo.head() == v2
    assert "hotfix" in box.read_file(f"{d.repo.path}/release.py").decode()


def test_shallow_clone_without_the_rollback_revision_is_refused(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    d.second_release()
    pid = d.main_pid()
    clone = f"{d.repo.root}/shallow"
    box.run(["git", "clone", "-q", "--depth", "1", f"file://{d.repo.path}", clone], check=True)
    res = box.run([*d.argv()[:8], clone, *d.argv()[9:]])
    assert res.returncode == 3, res.stderr
    assert "no revision to roll back to" in res.stderr and "shallow" in res.stderr
    assert d.main_pid() == pid


def test_rollback_command_returns_to_the_previous_good_deploy(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    v1 = d.first_release()
    d.second_release()
    res = d.unitctl("rollback", d.name, "--history-dir", d.hist, "--ready-timeout", "30")
    assert res.returncode == 0, res.stderr
    assert d.served() == "release v1" and d.repo.head() == v1
    assert d.history()[-1]["command"] == "rollback"


def _wait_for_line(proc: subprocess.Popen[str], needle: str, *, timeout: float) -> None:
    """Read ``proc``'s stderr until a line containing ``needle`` (a phase line) shows up."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"no {needle!r} line from unitctl; got {seen!r}, exit {proc.poll()}")


def test_auto_strategy_reloads_code_only_changes_gracefully(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    pid = d.main_pid()
    d.repo.release("v2")
    res = d.apply("--strategy", "auto")
    assert res.returncode == 0, res.stderr
    assert "reload" in res.stderr
    assert d.main_pid() == pid  # HUP: same master, new workers with the new code
    assert d.served() == "release v2"


def test_apply_workers_rewrites_the_installed_unit_and_gunicorn_runs_that_many(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()  # the unit runs --workers 2
    assert _eventually(d.worker_count, 2)
    before = box.read_file(d.unit_path).decode()
    res = d.apply("--workers", "3")
    assert res.returncode == 0, res.stderr
    after = box.read_file(d.unit_path).decode()
    assert after == before.replace("--workers 2", "--workers 3") and after != before
    assert _eventually(d.worker_count, 3)
    assert d.served() == "release v1" and d.ready()
    # diff builds the desired unit the same way: nothing left to change.
    same = d.unitctl("diff", d.name, "--workers", "3")
    assert same.returncode == 0 and same.stdout == "no changes\n", same.stdout + same.stderr


def _eventually(get: Any, want: Any, timeout: float = 15.0) -> bool:
    """Poll ``get()`` until it returns ``want`` (Gunicorn forks its workers after it reports ready)."""
    deadline = time.monotonic() + timeout
    while True:
        got = get()
        if got == want:
            return True
        if time.monotonic() > deadline:
            raise AssertionError(f"wanted {want!r}, still {got!r} after {timeout:g}s")
        time.sleep(0.2)


# -- the deploy outlives its caller, and a deploy that died is finished by the next command -------------------


class Paused:
    """unitctl started with the engine's fault hook: it stops right after announcing ``step`` in its journal."""

    def __init__(self, d: Deploy, step: str, *args: str, timeout: float = 30) -> None:
        self.d = d
        self.flag = f"{d.repo.root}/pause-{uuid.uuid4().hex[:6]}"
        env = {"UNITCTL_FAULT_PAUSE": step, "UNITCTL_FAULT_FILE": self.flag}
        self.proc = d.box.popen(d.argv(*args, timeout=timeout), env=env)
        self.pid = self._wait_for_pid()

    def _wait_for_pid(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.d.box.exists(self.flag):
                return int(self.d.box.read_file(self.flag).decode().strip())
            if self.proc.poll() is not None:
                raise AssertionError(f"unitctl ended (exit {self.proc.returncode}) before the pause: {self.stderr()}")
            time.sleep(0.05)
        raise AssertionError(f"unitctl never paused within {timeout:g}s")

    def signal(self, name: str) -> None:
        """Send a signal to unitctl itself, from inside the container (the pid is the one it sees)."""
        self.d.box.run(["kill", f"-{name}", str(self.pid)], check=True)

    def resume(self) -> None:
        self.d.box.host_path(self.flag).unlink()

    def wait(self, timeout: float = 180) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr and not self.proc.stderr.closed else ""


@pytest.mark.parametrize("release", ["good", "bad"])
def test_the_caller_going_away_during_the_guard_changes_nothing(box: Sandbox, venv_bin: Path, release: str) -> None:
    """A cancelled CI job: SSH closes unitctl's stdout/stderr and a terminal would send SIGHUP, mid-guard."""
    d = Deploy(box, venv_bin)
    d.first_release()
    v2 = d.second_release()
    v3 = d.repo.release("v3", table="items" if release == "good" else "items_v3")
    run = Paused(d, "guard", "--no-canary", timeout=4)
    assert run.proc.stdout is not None and run.proc.stderr is not None
    run.proc.stdout.close()
    run.proc.stderr.close()
    run.signal("HUP")
    run.resume()
    code = run.wait()
    last = d.history()[-1]
    if release == "good":
        assert code == 0 and d.served() == "release v3" and d.repo.head() == v3
        assert (last["outcome"], last["exit_code"], last["to_rev"]) == ("ok", 0, v3)
    else:
        assert code == 4 and d.served() == "release v2" and d.repo.head() == v2 and d.ready()
        assert (last["outcome"], last["exit_code"], last["to_rev"]) == ("rolled-back", 4, v3)
    status = json.loads(d.unitctl("status", d.name, "--history-dir", d.hist, "--json").stdout)["result"]
    assert status["last_outcome"] == last["outcome"] and status["in_progress"] is None


def test_kill_9_during_the_guard_is_reported_and_finished_by_status(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    v2 = d.second_release()
    v4 = d.repo.release("v4", table="items_v4")  # imports, never ready
    run = Paused(d, "guard", "--no-canary", timeout=4)
    run.signal("KILL")
    assert run.wait() != 0
    assert d.served() == "release v4"  # the broken release serves until someone comes back
    res = d.unitctl("status", d.name, "--history-dir", d.hist, "--json")
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)["result"]
    assert (st["last_outcome"], st["last_exit_code"], st["last_interrupted_step"]) == ("interrupted", 4, "guard")
    assert st["last_recovered_by"] == "status" and st["ready"] is True
    assert "died at step guard: finishing its rollback first" in res.stderr
    assert d.served() == "release v2" and d.repo.head() == v2
    last = d.history()[-1]
    assert (last["outcome"], last["to_rev"], last["from_rev"]) == ("interrupted", v4, v2)
    # Nothing is left to finish: status now only reports.
    again = json.loads(d.unitctl("status", d.name, "--history-dir", d.hist, "--json").stdout)["result"]
    assert again["last_outcome"] == "interrupted" and len(d.history()) == 3


def test_kill_9_after_the_unit_write_is_rolled_back_first_by_the_next_apply(box: Sandbox, venv_bin: Path) -> None:
    """Killed between the unit write and daemon-reload (NeedDaemonReload=yes): the re-run undoes it, then deploys."""
    d = Deploy(box, venv_bin)
    d.first_release()
    d.second_release()
    unit_before = box.read_file(d.unit_path)
    new_unit = d.unit_file("v2-workers3", workers=3)
    run = Paused(d, "daemon-reload", "--unit-file", new_unit)
    run.signal("KILL")
    run.wait()
    assert box.unit_properties(d.unit, "NeedDaemonReload")["NeedDaemonReload"] == "yes"
    assert box.read_file(d.unit_path) != unit_before
    res = d.apply("--unit-file", new_unit)
    assert res.returncode == 0, res.stderr
    assert "died at step daemon-reload: finishing its rollback first" in res.stderr
    outcomes = [(r["outcome"], r["interrupted_step"], r["recovered_by"]) for r in d.history()]
    assert outcomes[-2:] == [("interrupted", "daemon-reload", "apply"), ("ok", "", "")]
    assert box.unit_properties(d.unit, "NeedDaemonReload")["NeedDaemonReload"] == "no"
    assert box.read_file(d.unit_path) == box.read_file(new_unit) and _eventually(d.worker_count, 3)


def test_after_exit_5_the_same_apply_is_not_nothing_to_do(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    v2 = d.second_release()
    box.run(["mv", d.repo.db, d.repo.db + ".away"], check=True)  # the database is down for every release
    d.repo.release("v4", table="items_v4")
    assert d.apply("--no-canary", timeout=2).returncode == 5
    assert d.repo.head() == v2  # the last good revision is checked out, and recorded as deployed
    res = d.apply("--no-canary", timeout=2)
    assert res.returncode == 5, res.stderr  # never 0 "nothing to do" while /health/ready answers 503
    assert "nothing to do" not in res.stdout + res.stderr
    box.run(["mv", d.repo.db + ".away", d.repo.db], check=True)
    # The process running now was started by a rollback that never became ready: restarted under the guard once,
    res = d.apply()
    assert res.returncode == 0 and "not started by a recorded deploy" in res.stderr, res.stderr
    # then the revision that runs is recorded and answers ready: now there really is nothing to do.
    res = d.apply()
    assert res.returncode == 0 and "nothing to do" in res.stdout, res.stderr


def test_good_releases_pass_a_start_limit(box: Sandbox, venv_bin: Path) -> None:
    """StartLimitBurst=2: without reset-failed before each restart every other good release ended in exit 4."""
    d = Deploy(box, venv_bin)
    text = d.repo.unit(venv_bin, port=d.port).replace(
        "[Unit]\n", "[Unit]\nStartLimitBurst=2\nStartLimitIntervalSec=600\n", 1
    )
    d.repo.release("v1")
    assert d.apply("--unit-file", d.repo.write_unit_file(text, "limited")).returncode == 0
    for label in ("v2", "v3", "v4"):
        rev = d.repo.release(label)
        res = d.apply()
        assert res.returncode == 0, res.stderr
        assert d.served() == f"release {label}" and d.repo.head() == rev


def test_the_rollback_waits_for_the_previous_release_not_the_deploy_timeout(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    d.repo.release("v2", ready_after=2.0)  # the good release answers 503 for 2 s before it is ready
    assert d.apply("--fail-after", "0", timeout=30).returncode == 0
    d.repo.release("v3", table="items_v3")
    res = d.apply("--no-canary", timeout=0.5)  # a tiny deploy timeout must not make the rollback give up on v2
    assert res.returncode == 4, res.stderr
    assert d.served() == "release v2" and d.ready()


@BACKENDS
def test_a_check_unit_left_by_kill_9_is_removed_by_the_next_run(box: Sandbox, venv_bin: Path, backend: str) -> None:
    d = Deploy(box, venv_bin, backend=backend)
    d.first_release()
    d.repo.release("v2", extra_files={"app.py": "import time\ntime.sleep(60)\n" + APP_PY})  # a slow import
    pattern = f"unitctl-run-{d.name}-*"
    run = Paused(d, "pre-import", "--rev", d.repo.head())
    run.resume()
    _eventually(lambda: bool(_units(box, pattern)), True, timeout=30)
    run.signal("KILL")
    run.wait()
    assert _units(box, pattern)  # the import check outlived unitctl
    d.repo.release("v3")
    res = d.apply()
    assert res.returncode == 0, res.stderr
    assert _units(box, pattern) == [] and d.served() == "release v3"


def _units(box: Sandbox, pattern: str) -> list[str]:
    out = box.systemctl("list-units", "--all", "--plain", "--no-legend", pattern, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_a_full_unit_directory_refuses_with_nothing_changed(box: Sandbox, venv_bin: Path) -> None:
    """No space left where units live: the atomic write leaves the old unit, so exit 3 (it was 5)."""
    d = Deploy(box, venv_bin)
    d.first_release()
    d.second_release()
    pid = d.main_pid()
    unit_before = box.run(["cat", d.unit_path], check=True).stdout
    candidate = d.unit_file("v2-workers3", workers=3)
    copy = f"{d.repo.root}/etc-systemd-system"
    unit_dir = "/etc/systemd/system"
    box.run(["cp", "-a", unit_dir, copy], check=True)
    used_kib = int(box.run(["du", "-sk", copy], check=True).stdout.split()[0])
    # A tmpfs over the unit directory (in the container's mount namespace only) holding a copy of it, then filled.
    box.run(["mount", "-t", "tmpfs", "-o", f"size={used_kib + 256}k,mode=0755", "tmpfs", unit_dir], check=True)
    try:
        box.run(["cp", "-a", f"{copy}/.", unit_dir], check=True)
        box.run(["dd", "if=/dev/zero", f"of={unit_dir}/.fill", "bs=4k"])  # ends with ENOSPC, as wanted
        assert box.run(["sh", "-c", f"echo x > {unit_dir}/.probe"]).returncode != 0  # really full
        res = d.apply("--unit-file", candidate)
        assert res.returncode == 3, res.stderr
        assert "cannot write the new unit: No space left on device" in res.stderr
        assert box.run(["cat", d.unit_path], check=True).stdout == unit_before
        assert d.main_pid() == pid and d.served() == "release v2"
        assert box.unit_properties(d.unit, "NeedDaemonReload")["NeedDaemonReload"] == "no"
    finally:
        box.run(["umount", unit_dir], check=True)
    last = d.history()[-1]
    assert (last["outcome"], last["exit_code"]) == ("refused", 3)


def test_a_torn_history_line_never_takes_the_next_record_with_it(box: Sandbox, venv_bin: Path) -> None:
    """A crash (or a full disk) cut a record short: the next record must stay whole, or rollback goes wrong."""
    d = Deploy(box, venv_bin)
    d.first_release()
    v2 = d.second_release()
    with box.host_path(f"{d.hist}/history.jsonl").open("ab") as fh:
        fh.write(b'{"command":"apply","exit_code":0,"outcome":"ok","time":"2026-')  # no newline: torn
    v3 = d.repo.release("v3")
    assert d.apply().returncode == 0 and d.served() == "release v3"
    assert [r["to_rev"] for r in d.history()][-2:] == [v2, v3]
    res = d.unitctl("rollback", d.name, "--history-dir", d.hist, "--ready-timeout", "30")
    assert res.returncode == 0, res.stderr
    assert d.served() == "release v2" and d.repo.head() == v2  # the previous good deploy, not v1
