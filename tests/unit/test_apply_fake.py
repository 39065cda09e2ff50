"""The deploy transaction against FakeSystemd, real Probes over httpx.MockTransport and a real git repo.

Each test checks the three things a deploy promises: what systemd was told, what is on disk (unit
bytes, working tree) and what the history says.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakeclock import Clock
from gitcmd import commit, git
from known_warnings import HTTPCORE_UNIX_CONNECT_LEAK

from unitctl import desired, errors, fsutil, gitrepo, history
from unitctl.commands import apply as commands
from unitctl.commands import edges as command_edges
from unitctl.commands import report, status
from unitctl.commands.settings import ApplySettings, RollbackSettings, schema
from unitctl.deploy import ApplyRequest, ApplyResult, Edges, Reporter, engine, preflight
from unitctl.desired import DesiredOptions
from unitctl.errors import (
    ExitCode,
    GitStateError,
    HookError,
    LockHeldError,
    PreImportError,
    ReadyUrlError,
    RefusedError,
    RollbackFailedError,
    RolledBackError,
    UsageError,
    VerificationError,
)
from unitctl.lock import unit_lock
from unitctl.probe import Probe, ProbeResult
from unitctl.render import RenderFlags
from unitctl.rewrite import RewriteSpec
from unitctl.systemd.base import TransientResult, TransientSpec, UnitState
from unitctl.systemd.fake import FakeSystemd, absent_state, failed_state, running_state

UNIT = "app.service"
URL = "http://127.0.0.1:8000/health/ready"
GUNICORN = str(Path(sys.prefix) / "bin" / "gunicorn")  # this venv's: the units name a Gunicorn that exists


def unit_text(bind: str = "127.0.0.1:8000", extra: str = "", *, exec_reload: bool = False) -> bytes:
    return (
        "[Unit]\nDescription=test app\n\n[Service]\nType=notify\nUser=www-data\nGroup=www-data\n"
        'WorkingDirectory=/srv/app\nEnvironment=APP_DB=/srv/db.sqlite "DB_PASSWORD=hunter22"\n'
        f"EnvironmentFile=-/etc/app.env\nExecStart={GUNICORN} -w 2 -b {bind} app:app{extra}\n"
        + ("ExecReload=/bin/kill -s HUP $MAINPID\n" if exec_reload else "")
        + "\n[Install]\nWantedBy=multi-user.target\n"
    ).encode()


@dataclass
class Report:
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass
class World:
    tmp: Path
    repo: Path
    units: Path
    hist: Path
    fake: FakeSystemd
    clock: Clock
    revs: dict[str, str]
    answers: list[int] = field(default_factory=lambda: [200])
    verify_errors: tuple[str, ...] = ()
    verify_warnings: tuple[str, ...] = ()
    sleep_hook: Callable[[int], None] | None = None
    answer_fn: Callable[[], int] | None = None  # overrides ``answers``
    handler: Callable[[httpx.Request], httpx.Response] | None = None  # overrides both: the whole HTTP exchange
    stderr: io.StringIO = field(default_factory=io.StringIO)
    sleeps: int = 0
    canary_code: int = 200  # what the canary's readiness URL answers over its socket

    @property
    def unit_path(self) -> Path:
        return self.units / UNIT

    def probe_factory(self, url: str) -> Callable[[], ProbeResult]:
        def handler(request: httpx.Request) -> httpx.Response:
            if self.answer_fn is not None:
                code = self.answer_fn()
            else:
                code = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            return httpx.Response(code, text=f"status {code}")

        return Probe(url, transport=httpx.MockTransport(self.handler or handler)).check

    def canary_probe_factory(self, url: str, uds: str) -> Callable[[], ProbeResult]:
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(self.canary_code, text=f"canary status {self.canary_code}")

        return Probe(url, uds=uds, transport=httpx.MockTransport(handler)).check

    def verifier(self, path: Path, *, name: str | None = None) -> Report:
        assert path.read_bytes()  # verification sees the candidate's bytes
        return Report(errors=self.verify_errors, warnings=self.verify_warnings)

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.clock.sleep(seconds)
        if self.sleep_hook is not None:
            self.sleep_hook(self.sleeps)

    def edges(self) -> Edges:
        return Edges(
            backend=self.fake,
            probe_factory=self.probe_factory,
            verifier=self.verifier,
            reporter=Reporter(self.stderr, environ={}),  # the same lines on GitHub Actions as anywhere
            clock=self.clock,
            sleep=self.sleep,
            canary_probe_factory=self.canary_probe_factory,
        )

    def request(self, **kw: Any) -> ApplyRequest:
        base: dict[str, Any] = {
            "unit": UNIT,
            "guarded": True,
            "repo": self.repo,
            "ready_url": URL,
            "ready_timeout": 10.0,
            "ready_interval": 0.5,
            "history_dir": self.hist,
            "unit_dir": self.units,
            # The canary has its own tests (test_canary.py): these script the live service's answers only.
            "canary": False,
        }
        base.update(kw)
        return ApplyRequest(**base)

    def run(self, **kw: Any) -> ApplyResult:
        return engine.run(self.request(**kw), self.edges())

    def records(self) -> list[history.Record]:
        return history.read(self.hist, UNIT)

    def head(self) -> str:
        return git(self.repo, "rev-parse", "HEAD").strip()


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Locks of this test's units live in its own directory, not the machine's /run/lock/unitctl."""
    monkeypatch.setenv("UNITCTL_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("UNITCTL_CANARY_DIR", str(tmp_path / "canary"))
    return tmp_path / "locks"


@pytest.fixture
def world(tmp_path: Path) -> World:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    revs = {"v1": commit(repo, {"app.py": "V = 1\n"}, "v1"), "v2": commit(repo, {"app.py": "V = 2\n"}, "v2")}
    units = tmp_path / "units"
    units.mkdir()
    fake = FakeSystemd(unit_dir=str(units))
    return World(tmp_path, repo, units, tmp_path / "hist", fake, Clock(100.0), revs)


def installed(world: World, data: bytes | None = None) -> bytes:
    """Install a running unit at v1 with a recorded good deploy, then move HEAD to v2 (the 'pull')."""
    data = data or unit_text()
    world.unit_path.write_bytes(data)
    world.unit_path.chmod(0o640)
    world.fake.add_unit(UNIT)
    git(world.repo, "checkout", "-q", world.revs["v1"])
    history.append(
        world.hist,
        history.Record(
            time="t0",
            unit=UNIT,
            command="apply",
            outcome="ok",
            exit_code=0,
            to_rev=world.revs["v1"],
            repo=str(world.repo),
            unit_sha256=history.store_unit(world.hist, data),
            ready_url=URL,
        ),  # fmt: skip
    )
    git(world.repo, "checkout", "-q", world.revs["v2"])
    return data


def test_first_deploy_installs_restarts_guards_and_records(world: World) -> None:
    world.fake.add_unit(UNIT, absent_state(UNIT))  # systemd knows nothing of it: a first deploy
    world.answers = [503, 503, 200]
    result = world.run(unit_file=_write(world, unit_text()))
    assert result.exit_code == 0 and result.record.outcome == "ok"
    assert world.unit_path.read_bytes() == unit_text()
    assert world.fake.ops(UNIT).count("restart") == 1
    assert "daemon_reload" in world.fake.ops()
    rec = world.records()[-1]
    assert (rec.outcome, rec.to_rev, rec.from_rev, rec.rollback_source) == (
        "ok", world.revs["v2"], world.revs["v1"], "HEAD@{1}")  # fmt: skip
    assert [p.name for p in rec.phases] == ["capture", "ready-url", "verify", "pre-import", "switch", "guard"]
    assert all(p.ok for p in rec.phases)
    assert rec.phases[1].detail.startswith("skipped: app.service is inactive/dead")
    assert history.stored_unit(world.hist, rec.unit_sha256 or "") == unit_text()
    assert "HEAD@{1}" in world.stderr.getvalue()  # says which fallback gave the rollback revision


def test_pre_import_runs_in_the_services_environment(world: World) -> None:
    installed(world)
    seen: list[TransientSpec] = []

    def record(spec: TransientSpec) -> TransientResult:
        seen.append(spec)
        return TransientResult(0, "")

    world.fake.script_transient(record)
    world.run()
    (spec,) = seen
    assert list(spec.argv) == [GUNICORN, "--check-config", "-w", "2", "-b", "127.0.0.1:8000", "app:app"]
    assert (spec.user, spec.group, spec.cwd) == ("www-data", "www-data", "/srv/app")
    assert spec.env == {"APP_DB": "/srv/db.sqlite", "DB_PASSWORD": "hunter22"}
    assert list(spec.env_files) == [("/etc/app.env", True)]


def test_pre_import_module_var_uses_the_services_python(world: World) -> None:
    installed(world)
    seen: list[TransientSpec] = []

    def check(spec: TransientSpec) -> TransientResult:
        seen.append(spec)
        return TransientResult(0, "")

    world.fake.script_transient(check)
    world.run(pre_import="app:app")
    argv = list(seen[0].argv)
    assert Path(argv[0]).name.startswith("python") and argv[1] == "-c"
    assert "import_module('app')" in argv[2] and "'app')" in argv[2]


def test_second_release_with_unchanged_unit_restarts_without_writing(world: World) -> None:
    data = installed(world)
    before = world.unit_path.stat().st_ino
    result = world.run()
    assert result.exit_code == 0
    assert world.unit_path.stat().st_ino == before and world.unit_path.read_bytes() == data
    assert "daemon_reload" not in world.fake.ops()
    rec = world.records()[-1]
    assert (rec.from_rev, rec.to_rev, rec.rollback_source) == (world.revs["v1"], world.revs["v2"], "history")
    assert [r.outcome for r in world.records()] == ["ok", "ok"]


def test_nothing_to_do_exits_0_without_touching_the_service(world: World) -> None:
    installed(world)
    git(world.repo, "checkout", "-q", world.revs["v1"])
    result = world.run()
    assert result.exit_code == 0 and result.record.outcome == "nothing-to-do"
    assert "restart" not in world.fake.ops() and "run_transient" not in world.fake.ops()


def test_import_failure_refuses_never_restarts_and_puts_the_tree_back(world: World) -> None:
    data = installed(world)
    pid = world.fake.units[UNIT].main_pid
    traceback = (
        'Traceback (most recent call last):\n  File "app.py", line 1\n'
        "ImportError: cannot import name 'BaseSettings' from 'pydantic'\n"
    )
    world.fake.script_transient(TransientResult(1, traceback))
    with pytest.raises(PreImportError, match="cannot import name 'BaseSettings'") as info:
        world.run()
    assert info.value.exit_code == ExitCode.REFUSED
    assert "restart" not in world.fake.ops() and "reload" not in world.fake.ops()
    assert world.fake.units[UNIT].main_pid == pid
    assert world.head() == world.revs["v1"]  # a later restart of the old process loads the good code
    assert world.unit_path.read_bytes() == data
    rec = world.records()[-1]
    assert rec.outcome == "refused" and rec.exit_code == 3 and "BaseSettings" in rec.output


def test_never_ready_release_is_rolled_back_and_verified(world: World) -> None:
    data = installed(world)
    world.answers = [503] * 30 + [200]  # the new release never answers ready within 10 s at 0.5 s per probe
    with pytest.raises(RolledBackError, match="not ready within 10s.*rolled back to the previous release") as info:
        world.run(unit_file=_write(world, unit_text(extra=" --timeout 30")), fail_after=0)
    assert info.value.exit_code == ExitCode.ROLLED_BACK
    assert world.head() == world.revs["v1"]
    assert world.unit_path.read_bytes() == data and oct(world.unit_path.stat().st_mode & 0o777) == "0o640"
    assert world.fake.ops(UNIT).count("restart") == 2
    rec = world.records()[-1]
    assert rec.outcome == "rolled-back" and rec.exit_code == 4
    assert rec.unit_sha256 == fsutil.sha256(data)
    names = [p.name for p in rec.phases]
    assert names[-3:] == ["guard", "rollback", "rollback-guard"]
    assert not rec.phases[names.index("guard")].ok
    guard_line = next(line for line in world.stderr.getvalue().splitlines() if line.startswith("unitctl: guard"))
    assert "FAILED" in guard_line and "timeout" in guard_line, guard_line


def test_restart_failure_of_a_bad_unit_restores_its_bytes(world: World) -> None:
    data = installed(world)
    world.fake.fail_next("restart", UNIT, "Job for app.service failed because the control process exited")
    world.fake.add_journal(UNIT, ["[ERROR] Connection in use: ('127.0.0.1', 1)", "DB_PASSWORD=hunter22"])
    with pytest.raises(RolledBackError, match="the switch failed"):
        world.run(unit_file=_write(world, unit_text(bind="127.0.0.1:1")))
    assert world.unit_path.read_bytes() == data
    ops = world.fake.ops()
    assert ops.count("daemon_reload") == 2 and "reset_failed" in ops
    rec = world.records()[-1]
    assert rec.outcome == "rolled-back"
    assert any("Connection in use" in line for line in rec.journal)
    raw = (world.hist / "history.jsonl").read_text()
    assert "hunter22" not in raw  # secrets from Environment= are masked in everything recorded


def test_both_broken_needs_a_human(world: World) -> None:
    installed(world)
    crashed = failed_state(UNIT, status=3)
    world.fake.on_restart(UNIT, [crashed])
    world.fake.fail_next("restart", UNIT, "first restart fails")
    world.fake.on_restart(UNIT, [crashed])
    with pytest.raises(RollbackFailedError) as info:
        world.run()
    msg = str(info.value)
    assert info.value.exit_code == ExitCode.NEEDS_HUMAN
    assert "ROLLBACK FAILED" in msg and "journalctl -u app.service" in msg and world.revs["v1"][:12] in msg
    assert world.records()[-1].outcome == "rollback-failed"


def test_first_deploy_failure_removes_the_unit(world: World) -> None:
    world.fake.add_unit(UNIT, absent_state(UNIT))  # systemd knows nothing of it: a first deploy
    world.fake.on_restart(UNIT, [failed_state(UNIT)])
    with pytest.raises(RolledBackError, match="first deploy was undone"):
        world.run(unit_file=_write(world, unit_text()))
    assert not world.unit_path.exists()
    assert "stop" in world.fake.ops(UNIT)


def test_dirty_tree_is_refused_with_nothing_changed(world: World) -> None:
    data = installed(world)
    (world.repo / "app.py").write_text("V = 'local edit'\n")
    with pytest.raises(GitStateError, match="modified tracked files"):
        world.run(unit_file=_write(world, unit_text(bind="0.0.0.0:9")))
    assert world.unit_path.read_bytes() == data
    assert set(world.fake.ops()) <= {"state"}
    assert (world.repo / "app.py").read_text() == "V = 'local edit'\n"


def test_verification_errors_refuse(world: World) -> None:
    data = installed(world)
    world.verify_errors = ("ExecStart= binary /nope does not exist",)
    with pytest.raises(VerificationError, match="/nope"):
        world.run(unit_file=_write(world, unit_text(bind="0.0.0.0:9")))
    assert world.unit_path.read_bytes() == data and world.head() == world.revs["v2"]
    assert set(world.fake.ops()) <= {"state"}


def test_verify_warnings_are_printed_one_line_each_masked(world: World) -> None:
    installed(world)
    world.verify_warnings = ("unknown key Foo= in [Service]", "DATABASE_PASSWORD=hunter2hunter2 in a comment")
    assert world.run(unit_file=_write(world, unit_text(bind="0.0.0.0:9"))).record.outcome == "ok"
    lines = world.stderr.getvalue().splitlines()
    warnings = [line for line in lines if line.startswith("unitctl: warning: ")]
    assert warnings == [
        "unitctl: warning: unknown key Foo= in [Service]",
        "unitctl: warning: DATABASE_PASSWORD=**** in a comment",
    ]
    verify_line = next(i for i, line in enumerate(lines) if line.startswith("unitctl: verify"))
    assert "2 warning(s)" in lines[verify_line]
    assert all(lines.index(w) < verify_line for w in warnings)  # inside the verify phase, before its line
    assert "hunter2" not in world.stderr.getvalue()


def test_a_second_apply_is_refused_while_the_lock_is_held(world: World, tmp_path: Path) -> None:
    installed(world)
    with unit_lock(tmp_path / "locks", UNIT, command=["unitctl", "apply", "app"]):
        with pytest.raises(LockHeldError, match=rf"pid {os.getpid()} since"):
            world.run()
    assert "restart" not in world.fake.ops()
    rec = world.records()[-1]
    assert (rec.outcome, rec.exit_code) == ("refused", 3) and "locked by" in rec.reason
    assert world.run().exit_code == 0  # the lock is free again


def test_dry_run_changes_nothing_and_exits_1(world: World) -> None:
    data = installed(world)
    result = world.run(dry_run=True, unit_file=_write(world, unit_text(bind="0.0.0.0:9")))
    assert result.exit_code == ExitCode.CHANGES_PENDING and result.record.outcome == "would-change"
    assert world.unit_path.read_bytes() == data
    assert set(world.fake.ops()) <= {"state", "run_transient"}
    assert [r.outcome for r in world.records()] == ["ok"]  # a dry run is not an attempt
    git(world.repo, "checkout", "-q", world.revs["v1"])
    assert world.run(dry_run=True).exit_code == 0


def test_dry_run_with_rev_does_not_check_out(world: World) -> None:
    installed(world)
    git(world.repo, "checkout", "-q", world.revs["v1"])
    result = world.run(dry_run=True, rev=world.revs["v2"])
    assert result.exit_code == 1 and world.head() == world.revs["v1"]
    assert "pre-import skipped in a dry run" in world.stderr.getvalue()


def test_rev_is_checked_out_detached_and_recorded(world: World) -> None:
    installed(world)
    v3 = commit(world.repo, {"app.py": "V = 3\n"}, "v3")
    git(world.repo, "checkout", "-q", world.revs["v2"])
    result = world.run(rev=v3)
    assert result.exit_code == 0 and world.head() == v3
    assert git(world.repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "HEAD"


def test_auto_strategy_reloads_when_only_code_changed(world: World) -> None:
    installed(world, unit_text(exec_reload=True))
    world.run(strategy="auto")
    assert "reload" in world.fake.ops(UNIT) and "restart" not in world.fake.ops(UNIT)


def test_auto_is_the_default_and_the_history_says_how_the_release_was_switched(world: World) -> None:
    installed(world, unit_text(exec_reload=True))
    world.run()
    assert "reload" in world.fake.ops(UNIT) and "restart" not in world.fake.ops(UNIT)
    rec = world.records()[-1]
    assert (rec.strategy, rec.action, rec.rollback_action) == ("auto", "reload", None)


def test_auto_restarts_a_unit_without_exec_reload(world: World) -> None:
    installed(world)  # no ExecReload=: 'systemctl reload' would fail
    world.run()
    assert "restart" in world.fake.ops(UNIT) and "reload" not in world.fake.ops(UNIT)
    assert world.records()[-1].action == "restart"


def test_strategy_reload_without_exec_reload_is_a_usage_error(world: World) -> None:
    installed(world)
    with pytest.raises(UsageError, match="needs an ExecReload="):
        world.run(strategy="reload")
    assert "reload" not in world.fake.ops(UNIT) and "restart" not in world.fake.ops(UNIT)


def test_a_503_release_after_a_hup_is_failed_early_and_rolled_back_by_a_hup(world: World) -> None:
    installed(world, unit_text(exec_reload=True))
    pid = world.fake.units[UNIT].main_pid
    # The cgroup before the HUP, then only the new workers; the same before the rollback's HUP, then its workers.
    world.fake.script_pids(UNIT, [{pid, 11, 12}, {pid, 21, 22}, {pid, 21, 22}, {pid, 31, 32}])
    # The new release (after the first HUP) answers 503; the previous one (before it, and after the second) 200.
    world.answer_fn = lambda: 503 if world.fake.ops(UNIT).count("reload") == 1 else 200
    with pytest.raises(RolledBackError, match="10 consecutive not-ready answers.*rolled back") as info:
        world.run(ready_timeout=60.0)
    assert info.value.exit_code == ExitCode.ROLLED_BACK
    ops = world.fake.ops(UNIT)
    assert ops.count("reload") == 2 and "restart" not in ops, ops
    assert world.fake.units[UNIT].main_pid == pid and world.head() == world.revs["v1"]
    rec = world.records()[-1]
    assert (rec.action, rec.rollback_action) == ("reload", "reload")
    guard = next(p for p in rec.phases if p.name == "guard")
    assert "not-ready" in guard.detail
    rollback = next(p for p in rec.phases if p.name == "rollback")
    assert "reloaded (the unit is unchanged and the master is alive" in rollback.detail


def test_the_rollback_restarts_when_the_master_was_started_again(world: World) -> None:
    installed(world, unit_text(exec_reload=True))
    state = world.fake.units[UNIT]
    world.answers = [503]

    def restarted_behind_our_back(n: int) -> None:
        if n == 2:  # systemd restarted the service (Restart=on-failure): a new master, a new invocation
            world.fake.units[UNIT] = dataclasses.replace(state, main_pid=state.main_pid + 50, invocation_id="f" * 32)
            world.answers = [200]

    world.sleep_hook = restarted_behind_our_back
    with pytest.raises(RolledBackError):
        world.run()
    ops = world.fake.ops(UNIT)
    assert ops.count("reload") == 1 and ops.count("restart") == 1, ops
    rec = world.records()[-1]
    assert (rec.action, rec.rollback_action) == ("reload", "restart")
    rollback = next(p for p in rec.phases if p.name == "rollback")
    assert "restarted (the master is not the one the deploy switched" in rollback.detail


def test_the_rollback_of_a_unit_change_restarts(world: World) -> None:
    installed(world, unit_text(exec_reload=True))
    world.answer_fn = lambda: 503 if world.fake.ops(UNIT).count("restart") == 1 else 200
    with pytest.raises(RolledBackError):
        world.run(unit_file=_write(world, unit_text(extra=" --timeout 30", exec_reload=True)))
    rec = world.records()[-1]
    assert (rec.action, rec.rollback_action) == ("restart", "restart")
    assert "restarted (the unit file was put back)" in next(p for p in rec.phases if p.name == "rollback").detail


def test_an_unreadable_cgroup_before_the_hup_is_said_in_one_line(world: World) -> None:
    installed(world, unit_text(exec_reload=True))
    world.fake.script_pids(UNIT, [None])
    world.run()
    lines = [line for line in world.stderr.getvalue().splitlines() if "cannot read the processes" in line]
    assert len(lines) == 1 and "counts every answer, the old workers' too" in lines[0]


def test_auto_strategy_restarts_with_preload(world: World) -> None:
    installed(world, unit_text(extra=" --preload"))
    world.run(strategy="auto")
    assert "restart" in world.fake.ops(UNIT) and "reload" not in world.fake.ops(UNIT)


def test_ctrl_c_during_the_guard_rolls_back(world: World) -> None:
    installed(world)
    world.answers = [503]

    def interrupt(n: int) -> None:
        if n == 2:
            world.answers = [200]  # the previous release answers
            raise KeyboardInterrupt

    world.sleep_hook = interrupt
    with pytest.raises(RolledBackError, match="interrupted by SIGINT"):
        world.run()
    assert world.head() == world.revs["v1"]
    assert world.records()[-1].outcome == "interrupted"


def test_sigterm_during_the_guard_rolls_back_and_a_second_one_waits(world: World) -> None:
    installed(world)
    world.answers = [503, 503, 503, 503, 200]
    sent: list[int] = []

    def terminate(n: int) -> None:
        # First SIGTERM during the guard; a second one lands during the rollback guard and must not cut it short.
        if n in (2, 5):
            sent.append(n)
            os.kill(os.getpid(), signal.SIGTERM)

    world.sleep_hook = terminate
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RolledBackError, match="interrupted by SIGTERM"):
        world.run()
    assert sent == [2, 5]
    assert signal.getsignal(signal.SIGTERM) == previous
    rec = world.records()[-1]
    assert rec.outcome == "interrupted" and rec.exit_code == 4
    assert [p.name for p in rec.phases][-2:] == ["rollback", "rollback-guard"]
    assert rec.phases[-1].ok
    assert world.head() == world.revs["v1"]
    assert "SIGTERM received during the rollback" in world.stderr.getvalue()


def test_unguarded_apply_writes_reloads_and_restarts_only(world: World) -> None:
    installed(world)
    result = world.run(guarded=False, ready_url=None, unit_file=_write(world, unit_text(bind="0.0.0.0:9")))
    assert result.exit_code == 0
    assert "run_transient" not in world.fake.ops()
    assert world.unit_path.read_bytes() == unit_text(bind="0.0.0.0:9")


def test_usage_errors(world: World) -> None:
    with pytest.raises(UsageError, match="needs a readiness URL"):
        world.run(ready_url=None)
    with pytest.raises(UsageError, match="MODULE:VAR"):
        world.run(pre_import="app")
    with pytest.raises(UsageError, match="is not an http"):
        world.run(ready_url="ftp://x")
    assert world.fake.calls == []


def test_rollback_command_targets_the_previous_good_deploy(world: World) -> None:
    data_v1 = installed(world)
    world.run(unit_file=_write(world, unit_text(bind="127.0.0.1:8001")))
    req = commands.rollback_request(world.request())
    assert req.rev == world.revs["v1"] and req.unit_bytes == data_v1 and req.command == "rollback"
    result = engine.run(req, world.edges())
    assert result.exit_code == 0 and world.head() == world.revs["v1"]
    assert world.unit_path.read_bytes() == data_v1
    assert world.records()[-1].command == "rollback"


def test_rollback_after_a_unit_only_deploy_puts_the_old_unit_back(world: World) -> None:
    data_v1 = installed(world)
    git(world.repo, "checkout", "-q", world.revs["v1"])  # no pull: only the unit changes
    deployed = world.run(unit_file=_write(world, unit_text(bind="127.0.0.1:8001")))
    assert deployed.exit_code == 0 and world.records()[-1].to_rev == world.revs["v1"]
    req = commands.rollback_request(world.request())
    assert req.rev == world.revs["v1"] and req.unit_bytes == data_v1
    result = engine.run(req, world.edges())
    assert result.exit_code == 0 and world.unit_path.read_bytes() == data_v1


def test_rollback_command_goes_ahead_when_the_running_release_does_not_answer(world: World) -> None:
    data_v1 = installed(world)
    world.run(unit_file=_write(world, unit_text(bind="127.0.0.1:8001")))
    restarts_before = world.fake.ops(UNIT).count("restart")

    def handler(request: httpx.Request) -> httpx.Response:
        # The running release is broken (nothing listens) until the rollback restarts the previous one.
        if world.fake.ops(UNIT).count("restart") == restarts_before:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(200, text="ok")

    world.handler = handler
    result = engine.run(commands.rollback_request(world.request()), world.edges())
    assert result.exit_code == 0 and world.unit_path.read_bytes() == data_v1
    phase = next(p for p in world.records()[-1].phases if p.name == "ready-url")
    assert phase.ok and phase.detail.startswith(f"warning: {URL} does not answer (connection refused)")


def test_status_reports_the_deployed_revision_and_probes(world: World) -> None:
    installed(world)
    st = status.status(UNIT, backend=world.fake, history_dir=world.hist, ready_url=None,
                      probe_factory=world.probe_factory)  # fmt: skip
    assert st.deployed_rev == world.revs["v1"] and st.ready_url == URL and st.probe is not None and st.probe.ok
    data = json.loads(report.dumps(st.to_json()))
    assert data["ready"] is True and data["state"]["active_state"] == "active"


def _write(world: World, data: bytes) -> Path:
    path = world.tmp / "candidate" / UNIT
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def _unused(_: UnitState | None) -> None:  # keep imports honest for type checkers
    running_state(UNIT)


def test_first_deploy_from_a_single_commit_needs_no_rollback_revision(world: World, tmp_path: Path) -> None:
    repo = tmp_path / "single"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    only = commit(repo, {"app.py": "V = 1\n"}, "only")
    world.fake.add_unit(UNIT, absent_state(UNIT))  # systemd knows nothing of it: a first deploy
    result = world.run(repo=repo, unit_file=_write(world, unit_text()))
    assert result.exit_code == 0 and result.record.to_rev == only and result.record.from_rev is None


def test_installed_unit_without_any_rollback_revision_is_refused(world: World, tmp_path: Path) -> None:
    repo = tmp_path / "single"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, {"app.py": "V = 1\n"}, "only")
    world.unit_path.write_bytes(unit_text())
    world.fake.add_unit(UNIT)
    with pytest.raises(GitStateError, match="no revision to roll back to"):
        world.run(repo=repo)
    assert set(world.fake.ops()) <= {"state"}


# -- the command line: flags and unitctl.toml, one result line or one JSON object, exit codes ----------


@pytest.fixture
def cli(world: World, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    from typer.testing import CliRunner

    from unitctl.cli import app

    monkeypatch.setattr(command_edges, "real_edges", lambda name: world.edges())
    monkeypatch.setattr(commands, "DEFAULT_UNIT_DIR", world.units)
    monkeypatch.chdir(world.tmp)
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args))

    return invoke


def test_cli_apply_prints_one_json_object(world: World, cli: Callable[..., Any]) -> None:
    installed(world)
    res = cli("apply", "app", "--guarded", "--repo", str(world.repo), "--ready-url", URL,
              "--history-dir", str(world.hist), "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["outcome"] == "deployed" and out["exit_code"] == 0 and out["unit"] == UNIT
    result = out["result"]
    assert result["record"]["to_rev"] == world.revs["v2"] and result["plan"]["action"] == "restart"


def test_cli_apply_reads_unitctl_toml_and_reports_a_rollback(world: World, cli: Callable[..., Any]) -> None:
    installed(world)
    (world.tmp / "unitctl.toml").write_text(
        f'name = "app"\n[apply]\nguarded = true\nrepo = "{world.repo}"\nready_url = "{URL}"\n'
        f'ready_timeout = 3\nhistory_dir = "{world.hist}"\n'
    )
    # Only the new release (v2 checked out) fails its readiness check.
    world.answer_fn = lambda: 503 if world.head() == world.revs["v2"] else 200
    res = cli("apply")
    assert res.exit_code == 4, res.output
    assert res.stderr.count("unitctl: error:") == 1 and "not ready within 3s" in res.stderr
    assert world.records()[-1].outcome == "rolled-back"


def test_cli_usage_errors_exit_2(world: World, cli: Callable[..., Any]) -> None:
    res = cli("apply", "app", "--guarded", "--history-dir", str(world.hist))
    assert res.exit_code == 2 and "needs a readiness URL" in res.stderr
    res = cli("apply", "app", "--strategy", "sideways", "--history-dir", str(world.hist))
    assert res.exit_code == 2 and "'sideways' is not one of 'auto', 'restart', 'reload'" in res.stderr
    res = cli("apply", "bad name!", "--history-dir", str(world.hist))
    assert res.exit_code == 2 and "not a valid systemd unit name" in res.stderr
    assert world.fake.calls == []


def test_cli_history_lists_attempts(world: World, cli: Callable[..., Any]) -> None:
    installed(world)
    world.fake.script_transient(TransientResult(1, "ImportError: cannot import name 'X'\n"))
    cli("apply", "app", "--guarded", "--repo", str(world.repo), "--ready-url", URL, "--history-dir", str(world.hist))
    res = cli("history", "app", "--history-dir", str(world.hist))
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 2 and " ok " in lines[0] and "refused" in lines[1] and "ImportError" in lines[1]
    data = json.loads(cli("history", "app", "--json", "--history-dir", str(world.hist)).stdout)
    assert [r["outcome"] for r in data["result"]["records"]] == ["ok", "refused"]
    assert "no deploys recorded" in cli("history", "other", "--history-dir", str(world.hist)).stdout


def test_cli_rollback_without_an_earlier_deploy_is_refused(world: World, cli: Callable[..., Any]) -> None:
    installed(world)
    res = cli("rollback", "app", "--history-dir", str(world.hist))
    assert res.exit_code == 3 and "no earlier good deploy" in res.stderr


def test_reporter_counts_down_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, plain = Tty(), io.StringIO()
    answer = ProbeResult(False, 503, None, 0.01, "starting")
    for stream in (tty, plain):
        r = Reporter(stream, environ={})
        r.waiting("waiting for http://x/ready", 1.5, 60.0, answer)
        r.phase(history.Phase("guard", 2.0, True, "ready"))
    assert "\r" in tty.getvalue() and "1.5s / 60s" in tty.getvalue() and "HTTP 503" in tty.getvalue()
    assert plain.getvalue() == "unitctl: guard        2.00s  ok  ready\n"


def test_without_a_terminal_a_wait_beats_every_ten_seconds() -> None:
    plain = io.StringIO()
    r = Reporter(plain, environ={})
    answer = ProbeResult(False, 503, None, 0.01, "starting")
    for tick in range(0, 61):  # a probe every 0.5 s for 30 s
        r.waiting("waiting for http://u:hunter2@x/ready", tick / 2, 60.0, answer if tick else None)
    r.phase(history.Phase("guard", 30.0, False, "timeout"))
    assert plain.getvalue().splitlines() == [
        "unitctl: waiting for http://u:****@x/ready: 10 s of 60 s, last answer HTTP 503 (starting)",
        "unitctl: waiting for http://u:****@x/ready: 20 s of 60 s, last answer HTTP 503 (starting)",
        "unitctl: waiting for http://u:****@x/ready: 30 s of 60 s, last answer HTTP 503 (starting)",
        "unitctl: guard       30.00s  FAILED  timeout",
    ]


def test_on_github_actions_each_wait_is_a_group() -> None:
    out = io.StringIO()
    r = Reporter(out, environ={"GITHUB_ACTIONS": "true"})
    for wait in ("waiting for the canary at /run/x.sock", "waiting for http://x/ready"):
        for tick in range(0, 25):
            r.waiting(wait, tick, 60.0, None)
        r.phase(history.Phase("guard", 24.0, True, "ready"))
    lines = out.getvalue().splitlines()
    assert lines == [
        "::group::unitctl: waiting for the canary at /run/x.sock (at most 60 s)",
        "unitctl: waiting for the canary at /run/x.sock: 10 s of 60 s, last answer no answer yet",
        "unitctl: waiting for the canary at /run/x.sock: 20 s of 60 s, last answer no answer yet",
        "::endgroup::",
        "unitctl: guard       24.00s  ok  ready",
        "::group::unitctl: waiting for http://x/ready (at most 60 s)",
        "unitctl: waiting for http://x/ready: 10 s of 60 s, last answer no answer yet",
        "unitctl: waiting for http://x/ready: 20 s of 60 s, last answer no answer yet",
        "::endgroup::",
        "unitctl: guard       24.00s  ok  ready",
    ]


def test_a_slow_release_beats_in_the_ci_log_of_a_guarded_apply(world: World) -> None:
    installed(world)
    world.answers = [503] * 50 + [200]  # the fake clock advances 0.5 s a probe: about 25 s of 503 before ready
    res = world.run(unit_file=_write(world, unit_text(extra=" --timeout 30")), fail_after=0, ready_timeout=60.0)
    assert res.record.outcome == "ok"
    beats = [line for line in world.stderr.getvalue().splitlines() if " s of 60 s, last answer " in line]
    assert [b.split(": ")[2].split(",")[0] for b in beats] == ["10 s of 60 s", "20 s of 60 s"], world.stderr.getvalue()


BUILD = f"{sys.executable} -c \"import pathlib; pathlib.Path('built').write_text(pathlib.Path('app.py').read_text())\""


def run_here(spec: TransientSpec) -> TransientResult:
    """Run a hook's command on this machine where its mounts show its cwd (the fake has no namespaces).

    The import check (gunicorn --check-config) passes without running.
    """
    if "--check-config" in spec.argv:
        return TransientResult(0, "")
    cwd = next((source for source, dest in spec.binds if dest == spec.cwd), spec.cwd)
    env = {**os.environ, **{k: v for k, v in spec.env.items() if k != "PATH"}}
    proc = subprocess.run(list(spec.argv), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    return TransientResult(proc.returncode, proc.stdout + proc.stderr)


def test_build_cmd_runs_after_the_checkout_and_again_after_the_rollback(world: World) -> None:
    installed(world)
    built: list[str] = []
    # Before the build (the pre-flight probe of the running release) there is nothing built to look at.

    def answer() -> int:
        if not (world.repo / "built").exists():
            return 200
        built.append((world.repo / "built").read_text())
        return 503 if world.head() == world.revs["v2"] else 200

    world.answer_fn = answer
    world.fake.on_transient = run_here
    with pytest.raises(RolledBackError):
        world.run(build_cmd=(BUILD,))
    assert built[0] == "V = 2\n"  # the new release was built before it started
    assert (world.repo / "built").read_text() == "V = 1\n"  # and the previous one rebuilt on the way back
    assert [p.name for p in world.records()[-1].phases].count("hook build") == 2  # built, then rebuilt
    # As the service, never as root: the build and the rebuild took the unit's User=.
    assert {s.user for s in world.fake.transient_specs if "--check-config" not in s.argv} == {"www-data"}


def test_failing_build_is_refused_before_the_switch(world: World) -> None:
    installed(world)
    world.fake.on_transient = run_here
    with pytest.raises(HookError, match="exited 3: boom") as err:
        world.run(build_cmd=(f"{sys.executable} -c \"import sys; print('boom', file=sys.stderr); sys.exit(3)\"",))
    assert err.value.exit_code == ExitCode.REFUSED
    assert "restart" not in world.fake.ops()
    # Like a failed import check: the tree goes back to the last good revision (a later restart must not load v2).
    assert world.head() == world.revs["v1"]
    assert "exit 3 ---\nboom" in world.records()[-1].output
    assert world.records()[-1].outcome == "refused"
    with pytest.raises(UsageError, match="not a command line"):
        world.run(build_cmd=("'unbalanced",))


def test_daemon_reload_failure_restores_the_unit_without_restarting(world: World) -> None:
    data = installed(world)
    pid = world.fake.units[UNIT].main_pid
    world.fake.fail_next("daemon_reload", "*", "Failed to reload daemon: Access denied")
    with pytest.raises(RolledBackError, match="Access denied"):
        world.run(unit_file=_write(world, unit_text(bind="127.0.0.1:8001")))
    assert world.unit_path.read_bytes() == data
    assert "restart" not in world.fake.ops(UNIT) and world.fake.units[UNIT].main_pid == pid
    assert world.head() == world.revs["v1"]


def test_failed_first_deploy_with_rev_puts_the_tree_back(world: World, tmp_path: Path) -> None:
    repo = tmp_path / "single"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    first = commit(repo, {"app.py": "V = 1\n"}, "first")
    second = commit(repo, {"app.py": "V = 2\n"}, "second")
    git(repo, "checkout", "-q", first)
    git(repo, "reflog", "expire", "--expire=all", "--all")
    git(repo, "update-ref", "-d", "ORIG_HEAD") if (repo / ".git" / "ORIG_HEAD").exists() else None
    world.fake.add_unit(UNIT, absent_state(UNIT))  # systemd knows nothing of it: a first deploy
    world.fake.on_restart(UNIT, [failed_state(UNIT)])
    with pytest.raises(RolledBackError, match="first deploy was undone"):
        world.run(repo=repo, rev=second, unit_file=_write(world, unit_text()))
    assert git(repo, "rev-parse", "HEAD").strip() == first and not world.unit_path.exists()


# -- the readiness URL is checked before anything changes ----------------------------------------------


def _refused_connection(seen: list[str]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    return handler


def test_unreachable_ready_url_is_refused_before_anything_changes(world: World) -> None:
    data = installed(world)
    seen: list[str] = []
    world.handler = _refused_connection(seen)
    new_unit = _write(world, unit_text(extra=" --timeout 60"))
    with pytest.raises(ReadyUrlError) as err:
        world.run(unit_file=new_unit)
    assert err.value.exit_code == ExitCode.REFUSED
    assert str(err.value) == (
        f"{URL} does not answer while app.service is active (connection refused); "
        "check --ready-url: host, port, path or socket (nothing was changed)"
    )
    # Retried a few times, within about 3 seconds (the fake clock only moves by the sleeps).
    assert 2 <= len(seen) <= 8 and world.clock.now - 100.0 <= preflight.READY_URL_CHECK_SECONDS
    ops = world.fake.ops()
    assert not {"restart", "reload", "daemon_reload", "stop", "start", "run_transient"} & set(ops), ops
    assert world.unit_path.read_bytes() == data and world.head() == world.revs["v2"]
    rec = world.records()[-1]
    assert (rec.outcome, rec.exit_code) == ("refused", 3)
    assert [(p.name, p.ok) for p in rec.phases] == [("capture", True), ("ready-url", False)]


def test_ready_url_that_answers_on_a_retry_is_accepted(world: World) -> None:
    installed(world)
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(200, text="ok")

    world.handler = handler
    result = world.run()
    assert result.exit_code == 0 and "restart" in world.fake.ops()


@HTTPCORE_UNIX_CONNECT_LEAK
def test_missing_unix_socket_is_refused_nothing_changed(world: World, tmp_path: Path) -> None:
    data = installed(world)
    sock = tmp_path / "no-such.sock"

    def real_probe(url: str) -> Callable[[], ProbeResult]:
        return Probe(url).check  # a real connection attempt to a socket that does not exist

    edges = world.edges()
    edges.probe_factory = real_probe
    with pytest.raises(ReadyUrlError, match=f"socket {sock} does not exist"):
        engine.run(world.request(ready_url=f"unix:{sock}:/health/ready"), edges)
    assert "restart" not in world.fake.ops() and world.unit_path.read_bytes() == data
    assert world.head() == world.revs["v2"]


def test_redirecting_ready_url_is_refused(world: World) -> None:
    installed(world)
    world.handler = lambda request: httpx.Response(302, headers={"Location": "/login"})
    with pytest.raises(ReadyUrlError, match="never follows redirects") as err:
        world.run()
    assert "redirect to /login" in str(err.value) and "final URL" in str(err.value)
    assert "restart" not in world.fake.ops() and world.head() == world.revs["v2"]


def test_unready_running_release_is_a_warning_not_a_refusal(world: World) -> None:
    installed(world)
    world.answers = [503, 200]
    result = world.run()
    assert result.exit_code == 0 and world.fake.ops(UNIT).count("restart") == 1
    phase = next(p for p in world.records()[-1].phases if p.name == "ready-url")
    assert phase.ok and phase.detail.startswith("warning: the running release is not ready (HTTP 503")
    assert "a rollback would return to an unready release" in world.stderr.getvalue()


def test_ready_url_check_is_skipped_for_a_stopped_service(world: World) -> None:
    installed(world)
    stopped = failed_state(UNIT, unit_dir=str(world.units))
    world.fake.units[UNIT] = dataclasses.replace(stopped, active_state="inactive", sub_state="dead")
    seen: list[str] = []
    world.handler = _refused_connection(seen)
    # The guard would then fail (refused): the point here is only that the pre-flight does not refuse.
    with pytest.raises((RolledBackError, RollbackFailedError)):
        world.run(ready_timeout=1.0)
    phase = next(p for p in world.records()[-1].phases if p.name == "ready-url")
    assert phase.ok and phase.detail == "skipped: app.service is inactive/dead, nothing runs to answer yet"
    assert "restart" in world.fake.ops()


# -- the desired unit, built as 'unitctl diff' builds it ------------------------------------------------


def _settings(world: World, **kw: Any) -> ApplySettings:
    return ApplySettings(**{"name": "app", "guarded": True, "repo": str(world.repo), "ready_url": URL,
                            "history_dir": str(world.hist), **kw})  # fmt: skip


def test_apply_workers_and_no_preload_writes_exactly_the_rewritten_unit(world: World) -> None:
    before = unit_text().replace(b"-w 2 -b", b"--preload -w 9 -b")
    installed(world, before)
    req = commands.request_from_settings(
        _settings(world), command="apply", desired=DesiredOptions(workers="3", no_preload=True)
    )
    assert req.rewrite == RewriteSpec(workers=3, max_workers=None, no_preload=True, cpu_count=os.cpu_count())
    req = dataclasses.replace(req, unit_dir=world.units, ready_timeout=10.0)
    result = engine.run(req, world.edges())
    assert result.exit_code == 0, result.message
    expected = before.replace(f"{GUNICORN} --preload -w 9 -b".encode(), f"{GUNICORN} -w 3 -b".encode())
    assert expected != before and world.unit_path.read_bytes() == expected
    # The same bytes 'unitctl diff app --workers 3 --no-preload' compares against.
    assert desired.rewrite_text(before.decode(), req.rewrite or RewriteSpec())[0].encode() == expected
    assert world.fake.ops(UNIT).count("restart") == 1 and "daemon_reload" in world.fake.ops()
    assert world.records()[-1].candidate_sha256 == fsutil.sha256(expected)


def test_apply_rewrite_of_a_unit_that_is_not_installed_is_refused(world: World) -> None:
    absent = dataclasses.replace(failed_state(UNIT), load_state="not-found", active_state="inactive", fragment_path="")
    world.fake.add_unit(UNIT, absent)
    with pytest.raises(RefusedError, match="no unit to rewrite; pass --unit-file FILE or --render"):
        world.run(rewrite=RewriteSpec(workers=3))
    assert not world.unit_path.exists() and "restart" not in world.fake.ops()


def test_apply_rewrite_refuses_when_a_drop_in_holds_the_gunicorn_command(world: World) -> None:
    data = installed(world)
    dropin = world.units / f"{UNIT}.d" / "override.conf"
    dropin.parent.mkdir()
    dropin.write_text(f"[Service]\nExecStart=\nExecStart={GUNICORN} -w 4 -b 127.0.0.1:8000 app:app\n")
    with pytest.raises(RefusedError, match=f"comes from the drop-in {dropin}; apply rewrites only") as err:
        world.run(rewrite=RewriteSpec(workers=3))
    assert f"unitctl rewrite --in-place {dropin}" in str(err.value)
    assert world.unit_path.read_bytes() == data and "restart" not in world.fake.ops()
    assert world.records()[-1].outcome == "refused"
    # A drop-in that leaves ExecStart= alone does not stand in the way.
    dropin.write_text("[Service]\nTimeoutStopSec=20\n")
    assert world.run(rewrite=RewriteSpec(workers=3)).exit_code == 0
    assert b" -w 3 -b " in world.unit_path.read_bytes()


def test_apply_render_builds_the_unit_from_unitctl_toml(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "unitctl.toml").write_text(
        '[render]\napp = "shop.wsgi:application"\nworking_dir = "/srv/shop"\nuser = "shop"\nworkers = 7\n'
    )
    monkeypatch.chdir(tmp_path)
    req = commands.request_from_settings(_settings(world), command="apply", desired=DesiredOptions(render=True,
                                      workers="4", render_flags=RenderFlags(bind=("127.0.0.1:8000",))))  # fmt: skip
    assert req.unit_bytes is not None and req.unit_file is None and req.rewrite is None
    text = req.unit_bytes.decode()
    # The flag wins over the table; the rest comes from the table.
    # Socket activation by default: Gunicorn gets its sockets from app.socket, installed next to the service.
    assert "--workers 4 shop.wsgi:application" in text and "\nRequires=app.socket\n" in text
    assert "User=shop\n" in text and "WorkingDirectory=/srv/shop\n" in text and "--workers 7" not in text
    assert req.socket_bytes is not None and b"\nListenStream=127.0.0.1:8000\n" in req.socket_bytes
    world.fake.add_unit(UNIT, absent_state(UNIT))  # systemd knows nothing of it: a first deploy
    result = engine.run(dataclasses.replace(req, unit_dir=world.units, ready_timeout=10.0), world.edges())
    assert result.exit_code == 0, result.message
    assert world.unit_path.read_bytes() == req.unit_bytes
    assert (world.units / "app.socket").read_bytes() == req.socket_bytes
    assert world.fake.enabled == {"app.socket"}  # listens after a reboot


def test_apply_render_no_socket_installs_the_service_alone(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    flags = RenderFlags(app="shop:app", user="shop", working_dir="/srv/shop")
    opts = DesiredOptions(render=True, workers="2", render_flags=flags)
    no_socket = dataclasses.replace(opts, render_flags=dataclasses.replace(flags, socket=False))
    req = commands.request_from_settings(_settings(world), command="apply", desired=no_socket)
    assert req.socket_bytes is None and req.unit_bytes is not None and b"--bind 127.0.0.1:8000" in req.unit_bytes
    (tmp_path / "unitctl.toml").write_text("[render]\nsocket = false\n")
    from_file = commands.request_from_settings(_settings(world), command="apply", desired=opts)
    assert from_file.socket_bytes is None and from_file.unit_bytes == req.unit_bytes


SOCKET_V1 = b"[Socket]\nListenStream=127.0.0.1:8000\n"
SOCKET_V2 = b"[Socket]\nListenStream=127.0.0.1:8001\n"
SOCKET = "app.socket"


def test_a_first_deploy_with_a_socket_that_fails_removes_both_units(world: World) -> None:
    world.fake.add_unit(UNIT, absent_state(UNIT))  # systemd knows nothing of it: a first deploy
    world.fake.on_restart(UNIT, [failed_state(UNIT)])
    with pytest.raises(RolledBackError, match="first deploy was undone"):
        world.run(unit_bytes=unit_text(), socket_bytes=SOCKET_V1)
    assert not world.unit_path.exists() and not (world.units / SOCKET).exists()
    # Enabled by the deploy; stopped (systemd closed it) and disabled before its file went.
    assert [op for op in world.fake.ops(SOCKET) if op != "state"] == ["enable", "stop", "disable"]
    assert SOCKET not in world.fake.enabled
    journal = (world.hist / "journal" / f"{UNIT}.jsonl").read_text().splitlines()
    steps = [json.loads(line).get("step") for line in journal]
    assert steps.index("unit-write") < steps.index("socket-write") < steps.index("daemon-reload")
    assert steps.index("daemon-reload") < steps.index("socket-enable") < steps.index("restart")
    assert "rollback-socket" in steps and "socket-restart" not in steps  # the service's start pulled it in


def test_a_changed_socket_is_restarted_and_put_back_by_the_rollback(world: World) -> None:
    data = installed(world)
    (world.units / SOCKET).write_bytes(SOCKET_V1)
    world.fake.add_unit(SOCKET)
    world.answers = [503] * 30 + [200]  # never ready within 10 s; the previous release is
    with pytest.raises(RolledBackError, match="rolled back to the previous release"):
        world.run(unit_bytes=data, socket_bytes=SOCKET_V2)
    assert (world.units / SOCKET).read_bytes() == SOCKET_V1
    # Once to listen on the new address, once to listen on the old one again, each after a daemon-reload.
    assert world.fake.ops(SOCKET).count("restart") == 2
    ops = [c[0] if c[0] == "daemon_reload" else f"{c[0]} {c[1]}" for c in world.fake.calls if c[0] != "state"]
    last = len(ops) - 1 - ops[::-1].index(f"restart {SOCKET}")
    assert "daemon_reload" in ops[:last] and ops[:last].count("daemon_reload") >= 2
    # The previous code first, then the files, the reload, and only then the service: whatever starts it from the
    # checkout on (the rollback, or the socket on a queued connection) runs the previous release.
    journal = (world.hist / "journal" / f"{UNIT}.jsonl").read_text().splitlines()
    steps = [step for line in journal if (step := json.loads(line).get("step", "")).startswith("rollback-")]
    assert steps == ["rollback-checkout", "rollback-socket", "rollback-daemon-reload", "rollback-restart",
                     "rollback-guard"]  # fmt: skip


def test_a_socket_beside_the_unit_file_goes_with_it(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _write(world, unit_text())
    alone = commands.request_from_settings(_settings(world, unit_file=str(path)), command="apply")
    assert alone.socket_bytes is None
    (path.parent / "other.socket").write_bytes(SOCKET_V2)  # another unit's socket: not ours
    (path.parent / SOCKET).write_bytes(SOCKET_V1)
    req = commands.request_from_settings(_settings(world, unit_file=str(path)), command="apply")
    assert req.socket_bytes == SOCKET_V1
    world.fake.add_unit(UNIT, absent_state(UNIT))
    assert engine.run(dataclasses.replace(req, unit_dir=world.units), world.edges()).exit_code == 0
    assert (world.units / SOCKET).read_bytes() == SOCKET_V1 and not (world.units / "other.socket").exists()
    (path.parent / SOCKET).write_bytes(b"[Socket\nListenStream=1\n")
    with pytest.raises(errors.UnitSyntaxError):  # refused before anything changes
        commands.request_from_settings(_settings(world, unit_file=str(path)), command="apply")


def test_an_unchanged_socket_is_left_alone(world: World) -> None:
    data = installed(world)
    (world.units / SOCKET).write_bytes(SOCKET_V1)
    world.fake.add_unit(SOCKET)
    result = world.run(unit_bytes=data, socket_bytes=SOCKET_V1)
    assert result.exit_code == 0 and result.plan is not None and not result.plan.socket_changed
    assert set(world.fake.ops(SOCKET)) == {"state"}
    assert "daemon_reload" not in world.fake.ops()


@pytest.mark.parametrize(
    ("settings", "opts", "message"),
    [
        ({"unit_file": "/x.service"}, DesiredOptions(workers="3"), "--unit-file is the whole desired unit"),
        ({"unit_file": "/x.service"}, DesiredOptions(render=True), "--unit-file is the whole desired unit"),
        ({}, DesiredOptions(render=True, no_preload=True), "a rendered unit never preloads"),
        ({}, DesiredOptions(render_flags=RenderFlags(app="a:b")), "describe a rendered unit; add --render"),
        ({}, DesiredOptions(workers="zero"), "--workers must be a positive integer"),
    ],
)
def test_apply_desired_options_that_exclude_each_other(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any],
    opts: DesiredOptions, message: str,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=re.escape(message)) as err:
        commands.request_from_settings(_settings(world, **settings), command="apply", desired=opts)
    assert err.value.exit_code == ExitCode.USAGE and "\n" not in str(err.value)


def test_apply_cli_refuses_unit_file_with_workers_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from unitctl.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["apply", "shop", "--unit-file", "shop.service", "--workers", "3", "--history-dir", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unitctl: error: --unit-file is the whole desired unit")
    assert not (tmp_path / "locks").exists()  # refused before the lock: no attempt


# -- the git checks wired into the engine ------------------------------------------------------------


def _detail(record: history.Record, phase: str) -> str:
    return "; ".join(p.detail for p in record.phases if p.name == phase)


def test_untracked_file_in_the_targets_way_is_refused_up_front_even_in_a_dry_run(world: World) -> None:
    installed(world)
    (world.repo / "new.py").write_text("N = 'released'\n")
    git(world.repo, "add", "new.py")
    git(world.repo, "commit", "-q", "-m", "v3")
    v3 = world.head()
    git(world.repo, "checkout", "-q", world.revs["v2"])
    (world.repo / "new.py").write_text("N = 'local data'\n")  # untracked at v2, tracked by v3
    with pytest.raises(GitStateError, match=r"untracked files a target revision tracks \(new\.py"):
        world.run(dry_run=True, rev=v3)
    assert (world.repo / "new.py").read_text() == "N = 'local data'\n" and world.head() == world.revs["v2"]
    assert set(world.fake.ops()) <= {"state"}


def test_a_stale_git_lock_is_never_nothing_to_do_and_its_repair_is_shown(world: World) -> None:
    installed(world)
    git(world.repo, "checkout", "-q", world.revs["v1"])  # the deployed revision: otherwise nothing to do
    lock = world.repo / ".git" / "index.lock"
    lock.write_text("")  # left by a killed git: no process holds it
    result = world.run()
    assert result.exit_code == 0 and result.record.outcome == "ok"
    assert not lock.exists() and world.head() == world.revs["v1"]
    assert "index.lock left by a killed git" in _detail(result.record, "capture")
    assert f"removed {lock}" in _detail(world.records()[-1], "switch")  # the live checkout moves in the switch


def test_a_deleted_tracked_file_at_the_deployed_revision_is_checked_out_again(world: World) -> None:
    installed(world)
    git(world.repo, "checkout", "-q", world.revs["v1"])
    (world.repo / "app.py").unlink()
    result = world.run()
    assert result.record.outcome == "ok" and "the tree needs a checkout" in _detail(result.record, "capture")
    assert (world.repo / "app.py").read_text() == "V = 1\n"
    assert world.fake.ops(UNIT).count("restart") + world.fake.ops(UNIT).count("reload") == 1


def test_an_interrupted_checkout_is_never_nothing_to_do(world: World) -> None:
    installed(world)
    git(world.repo, "checkout", "-q", world.revs["v1"])
    git(world.repo, "update-ref", gitrepo.CHECKOUT_REF, world.revs["v2"])  # a checkout of v2 was killed
    result = world.run()
    assert result.record.outcome == "ok" and "was interrupted" in _detail(result.record, "capture")
    assert world.head() == world.revs["v1"] and git(world.repo, "status", "--porcelain") == ""


def test_the_rollback_names_the_tracked_files_it_overwrote(world: World) -> None:
    installed(world)
    world.answers = [503]

    def release_writes(n: int) -> None:
        if n == 1:
            (world.repo / "app.py").write_text("V = 'written by the failed release'\n")
        if n == 25:
            world.answers = [200]  # the previous release answers again

    world.sleep_hook = release_writes
    with pytest.raises(RolledBackError):
        world.run()
    assert world.head() == world.revs["v1"] and (world.repo / "app.py").read_text() == "V = 1\n"
    assert "changes to tracked files overwritten: app.py" in _detail(world.records()[-1], "rollback")


# -- where the unit is written (unitpath) -------------------------------------------------------------------


def _loaded_from(world: World, unit: str, fragment: Path) -> None:
    """Make systemd run ``unit`` (a healthy process) from the unit file ``fragment``."""
    world.fake.add_unit(unit, dataclasses.replace(running_state(unit), fragment_path=str(fragment)))


def test_a_failed_release_of_a_vendor_unit_removes_the_etc_copy_and_restarts_never_stops(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unitctl import unitpath

    vendor = world.tmp / "usr-lib-systemd-system"
    vendor.mkdir()
    monkeypatch.setattr(unitpath, "VENDOR_DIRS", (str(vendor),))  # /usr/lib itself: test_unitpath_real.py
    shipped = unit_text()
    (vendor / UNIT).write_bytes(shipped)
    _loaded_from(world, UNIT, vendor / UNIT)
    world.answers = [503] * 30 + [200]
    with pytest.raises(RolledBackError, match="rolled back to the previous release") as info:
        world.run(repo=None, unit_file=_write(world, unit_text(extra=" --timeout 30")))
    assert info.value.exit_code == ExitCode.ROLLED_BACK
    assert not world.unit_path.exists() and (vendor / UNIT).read_bytes() == shipped
    assert "stop" not in world.fake.ops(UNIT) and world.fake.ops(UNIT).count("restart") == 2
    rec = world.records()[-1]
    assert "a copy that shadows" in rec.phases[0].detail and f"removed {world.unit_path}" in rec.phases[-2].detail


def test_keeping_a_vendor_unit_compares_with_the_vendor_file_and_writes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unitctl import unitpath

    vendor = world.tmp / "vendor"
    vendor.mkdir()
    monkeypatch.setattr(unitpath, "VENDOR_DIRS", (str(vendor),))
    (vendor / UNIT).write_bytes(unit_text())
    _loaded_from(world, UNIT, vendor / UNIT)
    result = world.run(repo=None, unit_file=_write(world, unit_text()), dry_run=True)
    assert result.plan is not None and not result.plan.unit_changed and not result.plan.first_deploy
    assert not world.unit_path.exists()
    changed = world.run(repo=None, unit_file=_write(world, unit_text(bind="0.0.0.0:9")), dry_run=True)
    assert changed.exit_code == ExitCode.CHANGES_PENDING and not world.unit_path.exists()
    assert f"would write {world.unit_path}, a copy that shadows {vendor / UNIT}; undo: remove it" in changed.message


def test_a_template_instance_is_refused_without_edit_template(world: World) -> None:
    template = world.units / "app@.service"
    template.write_bytes(unit_text())
    _loaded_from(world, "app@1.service", template)
    with pytest.raises(errors.UnitPathError, match=r"every instance of app@; pass --edit-template") as info:
        world.run(unit="app@1.service", repo=None, unit_file=_write(world, unit_text(bind="0.0.0.0:9")))
    assert info.value.exit_code == ExitCode.REFUSED and "\n" not in str(info.value)
    assert template.read_bytes() == unit_text() and set(world.fake.ops()) <= {"state"}


def test_a_failed_release_of_a_template_restores_it_byte_for_byte_and_restarts_the_instance(world: World) -> None:
    template = world.units / "app@.service"
    before = unit_text() + b"# kept as it was\r\n"
    template.write_bytes(before)
    _loaded_from(world, "app@1.service", template)
    world.answers = [503] * 30 + [200]
    with pytest.raises(RolledBackError):
        world.run(unit="app@1.service", repo=None, edit_template=True, unit_file=_write(world, unit_text(bind="x:9")))
    assert template.read_bytes() == before and not (world.units / "app@1.service").exists()
    assert "stop" not in world.fake.ops() and world.fake.ops("app@1.service").count("restart") == 2


# -- the canary (fake systemd; the real one in tests/integration/test_canary_real.py) --------------------------


def _aside(world: World) -> None:
    """Put the live checkout back at v1 (what runs): v2 is deployed with --rev, nowhere in the live tree yet."""
    git(world.repo, "checkout", "-q", world.revs["v1"])


def test_a_ready_canary_runs_the_new_revision_aside_then_the_switch_checks_it_out(world: World) -> None:
    installed(world)
    _aside(world)
    result = world.run(rev=world.revs["v2"], canary=True)
    assert result.exit_code == 0, result.message
    (spec,) = world.fake.started_specs
    assert spec.unit_name == "unitctl-run-app-canary.service" and spec.user == "www-data"
    assert spec.env["XDG_RUNTIME_DIR"] == "/run/unitctl/canary/app"
    assert spec.binds == ((str(world.tmp / "canary" / "app" / "work" / "tree"), str(world.repo)),)
    assert "unix:/run/unitctl/canary/app/canary.sock" in spec.argv
    rec = world.records()[-1]
    names = [p.name for p in rec.phases]
    assert names.index("worktree") < names.index("pre-import") < names.index("canary") < names.index("switch")
    assert world.head() == world.revs["v2"]
    # Nothing of the canary is left: its unit stopped and forgotten, its tree removed.
    assert "unitctl-run-app-canary.service" not in world.fake.leftover_transients
    assert not (world.tmp / "canary" / "app" / "work" / "tree").exists()
    assert git(world.repo, "worktree", "list").count("\n") == 1


def test_a_canary_that_is_not_ready_refuses_and_the_live_service_and_tree_are_untouched(world: World) -> None:
    installed(world)
    _aside(world)
    world.canary_code = 503
    world.fake.add_journal("unitctl-run-app-canary.service", ["database down"])
    before = world.fake.ops(UNIT)
    result, error = engine.run_result(
        world.request(rev=world.revs["v2"], canary=True, ready_timeout=3.0), world.edges()
    )
    assert isinstance(error, RefusedError) and result.exit_code == 3 and result.record.outcome == "refused"
    assert "the canary of" in result.message and "HTTP 503" in result.message
    assert "the live service was not touched" in result.message
    assert set(world.fake.ops(UNIT)[len(before) :]) == {"state"}  # read, never restarted
    assert world.head() == world.revs["v1"]
    assert world.records()[-1].journal == ["database down"]
    assert not (world.tmp / "canary" / "app" / "work" / "tree").exists()
    assert "unitctl-run-app-canary.service" not in world.fake.leftover_transients


def test_no_canary_and_a_dry_run_start_none(world: World) -> None:
    installed(world)
    _aside(world)
    assert world.run(rev=world.revs["v2"], canary=True, dry_run=True).exit_code == 1
    assert world.run(rev=world.revs["v2"], canary=False).exit_code == 0
    assert world.fake.started_specs == []
    assert "canary skipped: --no-canary" in world.stderr.getvalue()


LOG_BUILD = (
    f"{sys.executable} -c \"import os, pathlib; p = pathlib.Path(os.environ['BUILD_LOG']); "
    "p.write_text(p.read_text() + os.getcwd() + ' ' + pathlib.Path('app.py').read_text()) if p.exists() "
    "else p.write_text(os.getcwd() + ' ' + pathlib.Path('app.py').read_text())\""
)


def test_the_build_runs_in_the_canary_tree_first_then_in_the_live_tree_after_its_checkout(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed(world)
    _aside(world)
    log = world.tmp / "builds.log"
    monkeypatch.setenv("BUILD_LOG", str(log))
    world.fake.on_transient = run_here
    result = world.run(rev=world.revs["v2"], canary=True, build_cmd=(LOG_BUILD,))
    assert result.exit_code == 0, result.message
    tree = world.tmp / "canary" / "app" / "work" / "tree"
    assert log.read_text().splitlines() == [f"{tree} V = 2", f"{world.repo} V = 2"]
    names = [p.name for p in world.records()[-1].phases]
    assert names.index("hook build") < names.index("pre-import") < names.index("canary") < names.index("switch")


def test_a_reload_that_fails_in_the_rollback_falls_back_to_a_restart(world: World) -> None:
    installed(world, unit_text(exec_reload=True))
    world.answer_fn = lambda: 503 if world.fake.ops(UNIT).count("reload") == 1 else 200

    def reload_fails_next(n: int) -> None:
        if n == 1:
            world.fake.fail_next("reload", UNIT, "Job for app.service failed")

    world.sleep_hook = reload_fails_next
    with pytest.raises(RolledBackError):
        world.run()
    ops = world.fake.ops(UNIT)
    assert ops.count("reload") == 2 and ops.count("restart") == 1, ops
    rec = world.records()[-1]
    assert (rec.action, rec.rollback_action) == ("reload", "restart")
    assert (
        "the reload failed (Job for app.service failed): restarting"
        in next(p for p in rec.phases if p.name == "rollback").detail
    )


# -- hooks (deploy/hooks.py) ------------------------------------------------------------------------------------

# A hook that logs its point, the release it sees in its working directory, and nothing else.
SAY = f"{sys.executable} -c \"import pathlib, sys; print(sys.argv[1], pathlib.Path('app.py').read_text().strip())\""


Seen = list[tuple[str, str, str, int, int]]


def _logging_runner(world: World, seen: Seen) -> Callable[[TransientSpec], TransientResult]:
    """Run hooks here; note (point, release seen, where, restarts of the service so far, canaries started)."""

    def runner(spec: TransientSpec) -> TransientResult:
        result = run_here(spec)
        if "--check-config" not in spec.argv:
            point, release = result.output.split(" ", 1)
            where = "canary tree" if spec.binds else spec.cwd or ""
            seen.append((point, release.strip(), where, world.fake.ops(UNIT).count("restart"),
                         len(world.fake.started_specs)))  # fmt: skip
        return result

    return runner


def test_hooks_run_at_their_points_in_order_on_the_new_release(world: World) -> None:
    installed(world)
    _aside(world)
    seen: Seen = []
    world.fake.on_transient = _logging_runner(world, seen)
    result = world.run(rev=world.revs["v2"], canary=True, build_cmd=(f"{SAY} build",),
                       pre_switch_cmd=(f"{SAY} pre-switch",), post_ready_cmd=(f"{SAY} post-ready",))  # fmt: skip
    assert result.exit_code == 0, result.message
    repo = str(world.repo)
    assert seen == [
        ("build", "V = 2", "canary tree", 0, 0),  # the new release, aside, before the canary
        ("pre-switch", "V = 2", "canary tree", 0, 1),  # after the canary, before the switch, once
        ("build", "V = 2", repo, 0, 1),  # the live tree after its checkout, before the restart
        ("post-ready", "V = 2", repo, 1, 1),  # after the restart and the guard
    ]
    rec = world.records()[-1]
    names = [p.name for p in rec.phases if p.name.startswith("hook") or p.name in ("canary", "switch", "guard")]
    assert names == ["hook build", "canary", "hook pre-switch", "hook build", "switch", "guard", "hook post-ready"]
    hook_line = next(line for line in world.stderr.getvalue().splitlines() if "hook pre-switch" in line)
    assert " ok  " in hook_line and "pre-switch (as www-data, in the canary's tree)" in hook_line
    assert "--- post-ready hook" in rec.output and "post-ready V = 2" in rec.output


def test_a_hook_takes_the_services_identity_and_the_canarys_tree_read_write(world: World) -> None:
    installed(world)
    _aside(world)
    world.run(rev=world.revs["v2"], canary=True, pre_switch_cmd=("/bin/true migrate",), hook_timeout=42.0)
    (spec,) = [s for s in world.fake.transient_specs if s.argv[0] == "/bin/true"]
    assert (spec.user, spec.group, spec.cwd) == ("www-data", "www-data", str(world.repo))
    assert spec.env["APP_DB"] == "/srv/db.sqlite" and list(spec.env_files) == [("/etc/app.env", True)]
    assert list(spec.argv) == ["/bin/true", "migrate"] and not spec.expand_variables
    assert spec.timeout == 42.0 and spec.name_prefix == "unitctl-run-app-"  # a leftover is removed by name
    tree = str(world.tmp / "canary" / "app" / "work" / "tree")
    link = str(world.tmp / "canary" / "app" / "live" / "checkout")
    # The tree at the checkout's path, and the live shared entries (venv/, a sqlite file) writable through it.
    assert spec.binds == ((tree, str(world.repo)), (str(world.repo), link)) and spec.ro_binds == ()


def test_a_bare_program_is_the_services_venvs(world: World) -> None:
    venv = world.tmp / "venv" / "bin"
    venv.mkdir(parents=True)
    for name, text in (("gunicorn", f"#!{venv}/python3\n"), ("pip", "#!/bin/sh\n")):
        (venv / name).write_text(text)
        (venv / name).chmod(0o755)
    installed(world, unit_text().replace(GUNICORN.encode(), f"{venv}/gunicorn".encode()))
    world.run(build_cmd=("pip install -r requirements.txt", "sh -c 'echo $PATH'"))
    hooks = [s for s in world.fake.transient_specs if "--check-config" not in s.argv]
    assert [list(s.argv) for s in hooks] == [[f"{venv}/pip", "install", "-r", "requirements.txt"],
                                             ["sh", "-c", "echo $PATH"]]  # fmt: skip
    assert hooks[1].env["PATH"].startswith(f"{venv}:")  # a shell the hook starts finds the venv's programs too


def test_a_failing_pre_switch_hook_is_exit_3_and_the_live_service_untouched(world: World) -> None:
    data = installed(world)
    _aside(world)
    pid = world.fake.units[UNIT].main_pid
    world.fake.on_transient = run_here
    fails = f"{sys.executable} -c \"import sys; sys.exit('no such table: items_v2')\""
    with pytest.raises(HookError, match="pre-switch hook .* exited 1: no such table") as err:
        world.run(rev=world.revs["v2"], canary=True, unit_file=_write(world, unit_text(bind="127.0.0.1:8001")),
                  pre_switch_cmd=(fails,), post_ready_cmd=("/bin/true",))  # fmt: skip
    assert err.value.exit_code == ExitCode.REFUSED
    assert "restart" not in world.fake.ops(UNIT) and world.fake.units[UNIT].main_pid == pid
    assert world.unit_path.read_bytes() == data and world.head() == world.revs["v1"]
    assert not (world.tmp / "canary" / "app" / "work" / "tree").exists()
    assert not any(s.argv[0] == "/bin/true" for s in world.fake.transient_specs)  # no later point ran
    rec = world.records()[-1]
    assert rec.outcome == "refused" and "no such table: items_v2" in rec.output


def test_a_failing_post_ready_hook_rolls_the_release_back(world: World) -> None:
    data = installed(world)
    world.fake.on_transient = run_here
    fails = f"{sys.executable} -c \"import sys; print('cache warm-up: 500'); sys.exit(2)\""
    with pytest.raises(RolledBackError, match="post-ready hook .* exited 2: cache warm-up: 500") as err:
        world.run(unit_file=_write(world, unit_text(bind="127.0.0.1:8001")), post_ready_cmd=(fails, "/bin/false"))
    assert err.value.exit_code == ExitCode.ROLLED_BACK
    assert world.fake.ops(UNIT).count("restart") == 2 and world.unit_path.read_bytes() == data
    assert world.head() == world.revs["v1"]
    assert not any(s.argv[0] == "/bin/false" for s in world.fake.transient_specs)  # the first failure stops them
    rec = world.records()[-1]
    assert rec.outcome == "rolled-back" and "cache warm-up: 500" in rec.output
    assert [p.name for p in rec.phases][-3:] == ["hook post-ready", "rollback", "rollback-guard"]


def test_a_failing_post_ready_hook_whose_rollback_fails_is_exit_5(world: World) -> None:
    installed(world)
    world.answer_fn = lambda: 200 if world.fake.ops(UNIT).count("restart") < 2 else 503  # v1 is broken too
    world.fake.script_transient(TransientResult(0, ""))  # the import check
    world.fake.script_transient(TransientResult(1, "migration 0042 missing"))
    with pytest.raises(RollbackFailedError, match="post-ready hook '/bin/true' exited 1.*ROLLBACK FAILED") as err:
        world.run(post_ready_cmd=("/bin/true",))
    assert err.value.exit_code == ExitCode.NEEDS_HUMAN
    assert world.records()[-1].outcome == "rollback-failed"


def test_a_hook_that_exceeds_its_timeout_is_killed_and_reported(world: World) -> None:
    installed(world)
    world.fake.script_transient(TransientResult(143, "collecting static files...", result="timeout"))
    with pytest.raises(HookError, match=r"build hook 'sleep 99' did not finish within 5 s and was killed"):
        world.run(build_cmd=("sleep 99",), hook_timeout=5.0)
    assert "restart" not in world.fake.ops(UNIT)
    rec = world.records()[-1]
    assert "'sleep 99': exit 143 (timeout) ---\ncollecting static files" in rec.output
    assert "killed after 5 s" in next(p.detail for p in rec.phases if p.name == "hook build" and not p.ok)


def test_a_hook_systemd_cannot_start_is_refused(world: World) -> None:
    installed(world)
    world.fake.fail_next("run_transient", "*", "cannot run 'nosuch' as a transient unit: no such executable")
    with pytest.raises(HookError, match="build hook 'nosuch' could not run: cannot run 'nosuch'"):
        world.run(build_cmd=("nosuch",))
    assert "restart" not in world.fake.ops(UNIT)


def test_hooks_usage_errors_and_dry_runs(world: World) -> None:
    installed(world)
    with pytest.raises(UsageError, match="--post-ready-cmd runs once the guard said"):
        world.run(guarded=False, post_ready_cmd=("/bin/true",))
    with pytest.raises(UsageError, match="--pre-switch-cmd is empty"):
        world.run(pre_switch_cmd=("  ",))
    with pytest.raises(UsageError, match="--hook-timeout"):
        world.run(hook_timeout=float("inf"))
    assert world.run(dry_run=True, build_cmd=("/bin/true",), pre_switch_cmd=("/bin/true",)).exit_code == 1
    assert not any(s.argv[0] == "/bin/true" for s in world.fake.transient_specs)  # a dry run runs no hook


def test_hooks_come_from_the_flags_or_unitctl_toml_as_lists() -> None:
    s = ApplySettings(
        name="app", build_cmd=["pip install -r requirements.txt", "make"], post_ready_cmd=["curl x"], hook_timeout=30
    )
    req = commands.request_from_settings(s, command="apply", desired=DesiredOptions(unit_file="/dev/null"))
    assert req.build_cmd == ("pip install -r requirements.txt", "make") and req.post_ready_cmd == ("curl x",)
    assert (req.pre_switch_cmd, req.hook_timeout) == ((), 30.0)
    # The same keys, with the same kinds, in [apply] and [rollback] of unitctl.toml.
    hooks = ("build_cmd", "pre_switch_cmd", "post_ready_cmd", "hook_timeout")
    assert {k: schema(ApplySettings)[k] for k in hooks} == {k: schema(RollbackSettings)[k] for k in hooks}
