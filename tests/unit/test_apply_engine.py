"""The deploy engine's safety net against FakeSystemd and a real git repo: undo per step, the intent journal and
recovery of a deploy that died, caller loss, "nothing to do" checked against reality, and the smaller holes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_apply_fake as base
from gitcmd import git
from test_apply_fake import World, _write, installed, unit_text

from unitctl import fsutil, history, lock
from unitctl.commands.status import status
from unitctl.deploy import capture, engine, journal, model
from unitctl.deploy.progress import Reporter, safe_write
from unitctl.deploy.undo import Undo, UndoLog
from unitctl.errors import (
    ExitCode,
    InputError,
    LockHeldError,
    RefusedError,
    RollbackFailedError,
    RolledBackError,
    UnitPathError,
)
from unitctl.systemd.base import TransientResult, TransientSpec

UNIT = "app.service"
# The fake world of test_apply_fake: the same fixtures, shared rather than copied.
world = base.world
lock_dir = base.lock_dir


class Killed(BaseException):
    """Stands for kill -9: nothing in the engine catches it, no finally of the engine records anything."""


@contextlib.contextmanager
def killed_at(step: str) -> Iterator[None]:
    """Make the engine die right after announcing ``step`` in its journal (as a kill -9 during the fault hook)."""
    real = journal.fault_pause

    def die(name: str, environ: object = None) -> None:
        real(name)
        if name == step:
            raise Killed(step)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(journal, "fault_pause", die)
        with pytest.raises(Killed):
            yield


def unfinished(world: World) -> journal.Transaction | None:
    return journal.Journal(world.hist, UNIT).unfinished()


# -- the undo log -------------------------------------------------------------------------------------------


def test_undo_log_keeps_first_place_and_latest_target() -> None:
    log = UndoLog()
    log.register(Undo("tree", rev="a" * 40, repo="/r"))
    log.register(Undo("unit", path="/u", sha256=None))
    log.register(Undo("tree", rev="b" * 40, repo="/r"))
    assert [(u.resource, u.rev) for u in log.entries()] == [("tree", "b" * 40), ("unit", None)]
    touched = [log.touched_systemd]
    log.drop("unit")
    touched.append(log.touched_systemd)
    assert touched == [True, False]
    assert Undo.from_json(Undo("unit", path="/u", sha256="c" * 64, mode=0o640).to_json()).mode == 0o640
    with pytest.raises(ValueError, match="unknown undo resource"):
        Undo.from_json({"resource": "database"})


def _died_with(world: World, *undos: Undo, was_active: bool = True) -> None:
    """Write the journal of a deploy that registered ``undos`` and died."""
    j = journal.Journal(world.hist, UNIT)
    j.begin(unit=UNIT, command="apply", time="t1", repo=str(world.repo), ready_url=world.request().ready_url,
            ready_interval=0.5, successes_needed=3, strategy="restart")  # fmt: skip
    j.note(from_rev=world.revs["v1"], to_rev=world.revs["v2"], was_active=was_active, rollback_timeout=10.0)
    for undo in undos:
        j.step({"tree": "checkout", "unit": "unit-write", "daemon": "daemon-reload", "service": "restart"}
               [undo.resource], undo=undo)  # fmt: skip


def test_undo_of_a_checkout_puts_the_tree_back_and_nothing_else(world: World) -> None:
    installed(world)
    _died_with(world, Undo("tree", rev=world.revs["v1"], repo=str(world.repo)))
    rec = engine.recover(UNIT, history_dir=world.hist, edges=world.edges(), by="apply")
    assert rec is not None and (rec.outcome, rec.exit_code) == ("interrupted", 3)
    assert world.head() == world.revs["v1"]
    assert not {"restart", "daemon_reload", "stop"} & set(world.fake.ops())
    assert unfinished(world) is None and world.records()[-1].tx == rec.tx


def test_undo_of_a_unit_write_restores_bytes_mode_and_reloads(world: World) -> None:
    data = installed(world)
    sha = history.store_unit(world.hist, data)
    world.unit_path.write_bytes(b"[Service]\nExecStart=/broken\n")
    _died_with(world, Undo("unit", path=str(world.unit_path), sha256=sha, mode=0o640), Undo("daemon"))
    rec = engine.recover(UNIT, history_dir=world.hist, edges=world.edges(), by="status")
    assert world.unit_path.read_bytes() == data and oct(world.unit_path.stat().st_mode & 0o777) == "0o640"
    assert world.fake.ops().count("daemon_reload") == 1 and "restart" not in world.fake.ops()
    assert rec is not None and rec.outcome == "interrupted" and rec.exit_code == 4 and rec.recovered_by == "status"


def test_undo_of_a_unit_write_that_died_before_its_daemon_reload_reloads_all_the_same(world: World) -> None:
    data = installed(world)
    sha = history.store_unit(world.hist, data)
    world.unit_path.write_bytes(b"[Service]\nExecStart=/broken\n")
    _died_with(world, Undo("unit", path=str(world.unit_path), sha256=sha, mode=0o644))  # no daemon-reload yet
    engine.recover(UNIT, history_dir=world.hist, edges=world.edges(), by="apply")
    assert world.unit_path.read_bytes() == data
    # systemd must load the file put back: a rewritten file is NeedDaemonReload=yes even with the old bytes.
    assert world.fake.ops().count("daemon_reload") == 1


def test_undo_of_a_unit_write_that_never_happened_leaves_the_file_alone(world: World) -> None:
    data = installed(world)
    sha = history.store_unit(world.hist, data)
    before = world.unit_path.stat().st_mtime_ns
    _died_with(world, Undo("unit", path=str(world.unit_path), sha256=sha, mode=world.unit_path.stat().st_mode & 0o777))
    engine.recover(UNIT, history_dir=world.hist, edges=world.edges(), by="apply")
    assert world.unit_path.read_bytes() == data and world.unit_path.stat().st_mtime_ns == before
    assert "daemon_reload" not in world.fake.ops()


def test_undo_of_a_first_deploy_stops_and_removes_the_unit(world: World) -> None:
    world.fake.add_unit(UNIT)
    world.unit_path.write_bytes(unit_text())
    _died_with(world, Undo("unit", path=str(world.unit_path), sha256=None), Undo("daemon"),
               Undo("service", was_active=False), was_active=False)  # fmt: skip
    rec = engine.recover(UNIT, history_dir=world.hist, edges=world.edges(), by="apply")
    assert not world.unit_path.exists() and "stop" in world.fake.ops(UNIT) and "restart" not in world.fake.ops()
    assert rec is not None and "first deploy was undone" in rec.reason + str(world.stderr.getvalue())


def test_undo_of_a_restart_restarts_the_previous_release_and_guards_it(world: World) -> None:
    installed(world)
    _died_with(world, Undo("service", was_active=True))
    rec = engine.recover(UNIT, history_dir=world.hist, edges=world.edges(), by="apply")
    ops = world.fake.ops(UNIT)
    assert ops.index("reset_failed") < ops.index("restart")
    assert rec is not None and [p.name for p in rec.phases] == ["rollback", "rollback-guard"]
    assert rec.phases[-1].ok and rec.exit_code == 4


def test_undo_of_a_stopped_service_leaves_it_stopped(world: World) -> None:
    installed(world)
    _died_with(world, Undo("service", was_active=False), was_active=False)
    rec = engine.recover(UNIT, history_dir=world.hist, edges=world.edges(), by="apply")
    assert "stop" in world.fake.ops(UNIT) and "restart" not in world.fake.ops(UNIT)
    assert rec is not None and "stopped, as it was" in rec.reason + world.stderr.getvalue()


# -- the intent journal: a deploy that died is finished by the next command ---------------------------------


@pytest.mark.parametrize("step", ["unit-write", "daemon-reload", "restart", "guard"])
def test_a_deploy_killed_after_the_switch_began_is_rolled_back_by_the_next_apply(world: World, step: str) -> None:
    data = installed(world)
    with killed_at(step):
        world.run(unit_file=_write(world, unit_text(bind="127.0.0.1:8001")))
    tx = unfinished(world)
    assert tx is not None and tx.last_step == step
    # The same apply again: first the dead one's rollback, then this attempt (which deploys it properly).
    git(world.repo, "checkout", "-q", world.revs["v2"])
    result = world.run(unit_file=_write(world, unit_text(bind="127.0.0.1:8001")))
    outcomes = [(r.outcome, r.exit_code, r.interrupted_step, r.recovered_by) for r in world.records()]
    assert outcomes[-2] == ("interrupted", 4, step, "apply") and outcomes[-1][:2] == ("ok", 0)
    assert f"died at step {step}: finishing its rollback first" in world.stderr.getvalue()
    assert result.exit_code == 0 and world.unit_path.read_bytes() == unit_text(bind="127.0.0.1:8001") != data


def test_a_deploy_killed_during_the_guard_is_reported_and_finished_by_status(world: World) -> None:
    data = installed(world)
    with killed_at("guard"):
        world.run(unit_file=_write(world, unit_text(bind="127.0.0.1:8001")))
    assert world.unit_path.read_bytes() != data  # the broken unit is live until someone comes back
    st = status(UNIT, backend=world.fake, history_dir=world.hist, ready_url=None, probe_factory=world.probe_factory,
                reporter=Reporter(world.stderr))  # fmt: skip
    assert world.unit_path.read_bytes() == data and world.head() == world.revs["v1"], world.stderr.getvalue()
    out = st.to_json()
    assert (out["last_outcome"], out["last_exit_code"], out["last_interrupted_step"]) == ("interrupted", 4, "guard")
    assert out["last_recovered_by"] == "status" and out["in_progress"] is None
    assert "interrupted at step guard, finished by 'unitctl status'" in "\n".join(st.lines())


def test_status_describes_a_deploy_in_progress_without_touching_it(world: World, lock_dir: Path) -> None:
    installed(world)
    _died_with(world, Undo("service", was_active=True))
    with lock.unit_lock(lock_dir, UNIT, command=["unitctl", "apply", "app"]):
        st = status(UNIT, backend=world.fake, history_dir=world.hist, ready_url=None,
                    probe_factory=world.probe_factory)  # fmt: skip
    assert st.in_progress is not None and st.in_progress["step"] == "restart"
    assert "restart" not in world.fake.ops() and unfinished(world) is not None
    assert any(line.startswith("in progress: apply (pid ") for line in st.lines())


def test_an_outcome_decided_before_the_kill_is_recorded_not_undone(world: World) -> None:
    installed(world)
    with killed_at("record"):
        world.run()
    assert [r.outcome for r in world.records()] == ["ok"]  # the history line was never written
    restarts = world.fake.ops(UNIT).count("restart")
    rec = engine.recover(UNIT, history_dir=world.hist, edges=world.edges(), by="apply")
    assert rec is not None and rec.outcome == "ok" and rec.to_rev == world.revs["v2"]
    assert [r.outcome for r in world.records()] == ["ok", "ok"] and world.fake.ops(UNIT).count("restart") == restarts
    assert world.head() == world.revs["v2"]  # a good release that reached "ready" stays


def test_the_journal_survives_only_whole_lines(world: World) -> None:
    j = journal.Journal(world.hist, UNIT)
    j.begin(unit=UNIT, command="apply")
    j.step("restart", undo=Undo("service"))
    with j.path.open("ab") as fh:
        fh.write(b'{"event": "step", "tx": "')  # a crash in the middle of a line
    tx = journal.read(j.path)
    assert tx is not None and tx.last_step == "restart" and not tx.ended
    j.step("guard")
    assert journal.read(j.path) is not None and journal.read(j.path).last_step == "guard"  # type: ignore[union-attr]
    j.end()
    assert j.unfinished() is None


def test_fault_hook_writes_the_pid_and_waits_for_the_file_to_go(tmp_path: Path) -> None:
    import threading

    flag = tmp_path / "pause"
    env = {"UNITCTL_FAULT_PAUSE": "restart", "UNITCTL_FAULT_FILE": str(flag)}
    journal.fault_pause("guard", env)  # another step: no pause, no file
    assert not flag.exists()
    seen: list[str] = []

    def release() -> None:
        while not flag.exists():
            pass
        seen.append(flag.read_text())
        flag.unlink()

    t = threading.Thread(target=release)
    t.start()
    journal.fault_pause("restart", env)
    t.join()
    assert seen == [f"{os.getpid()}\n"]
    assert set(model.STEPS) >= {"lock", "canary", "pre-switch", "unit-write", "post-ready", "rollback-guard", "record"}
    assert len(model.STEPS) == len(set(model.STEPS)) == 26


# -- caller loss ------------------------------------------------------------------------------------------------


def test_a_closed_output_pipe_changes_nothing_about_the_outcome(world: World) -> None:
    installed(world)
    r, w = os.pipe()
    os.close(r)
    stream = os.fdopen(w, "w")
    world.answers = [200]
    edges = world.edges()
    edges.reporter = Reporter(stream)
    result = engine.run(world.request(), edges)
    assert result.exit_code == 0 and world.records()[-1].outcome == "ok" and world.head() == world.revs["v2"]
    assert world.fake.ops(UNIT).count("restart") == 1  # a good release is never undone for a lost caller
    assert safe_write(stream, "more\n")
    stream.close()  # does not raise: the descriptor now points at /dev/null


def test_sighup_is_ignored_during_the_deploy(world: World) -> None:
    import signal

    installed(world)
    previous = signal.getsignal(signal.SIGHUP)

    def hang_up(n: int) -> None:
        if n == 1:
            os.kill(os.getpid(), signal.SIGHUP)

    world.sleep_hook = hang_up
    world.answers = [503, 200]
    assert world.run().exit_code == 0
    assert signal.getsignal(signal.SIGHUP) == previous


# -- "nothing to do" checks reality -------------------------------------------------------------------------


def test_nothing_to_do_is_not_said_while_the_running_release_is_not_ready(world: World) -> None:
    installed(world)
    git(world.repo, "checkout", "-q", world.revs["v1"])
    world.answers = [503, 503, 503] + [503] * 40
    with pytest.raises((RolledBackError, RollbackFailedError)):
        world.run(ready_timeout=2.0)
    assert world.fake.ops(UNIT).count("restart") >= 1
    rec = world.records()[-1]
    assert rec.outcome in ("rolled-back", "rollback-failed") and "HTTP 503" in rec.phases[0].detail


def test_need_daemon_reload_is_refused_never_nothing_to_do(world: World) -> None:
    # Someone changed the unit files since systemd loaded them: unitpath refuses to deploy over that change.
    data = installed(world)
    git(world.repo, "checkout", "-q", world.revs["v1"])
    world.fake.units[UNIT] = dataclasses.replace(world.fake.units[UNIT], need_daemon_reload=True)
    with pytest.raises(UnitPathError, match=r"NeedDaemonReload=yes\); check that change") as info:
        world.run()
    assert info.value.exit_code == ExitCode.REFUSED
    assert set(world.fake.ops()) <= {"state"} and world.unit_path.read_bytes() == data
    assert world.records()[-1].outcome == "refused"


def test_plan_decisions_from_reality() -> None:
    action, why = model.choose_action(model.Switch("restart", unit_changed=False, code_changed=False, preload=False,
                                      was_active=True, running_ready=False))  # fmt: skip
    assert action == "restart" and "does not answer ready" in why
    action, why = model.choose_action(model.Switch("auto", unit_changed=False, code_changed=False, preload=False,
                                      was_active=True, stale_reload=True))  # fmt: skip
    assert action == "restart" and "NeedDaemonReload" in why
    assert model.choose_action(model.Switch("auto", unit_changed=False, code_changed=False, preload=False,
                                            was_active=True, running_ready=True))[0] == "none"  # fmt: skip
    assert model.rollback_ready_timeout(0.5, None) == model.ROLLBACK_READY_FLOOR
    assert model.rollback_ready_timeout(0.5, 40.0) == 80.0
    assert model.rollback_ready_timeout(120.0, 3.0) == 120.0


# -- the smaller holes ----------------------------------------------------------------------------------------


def test_restart_is_preceded_by_reset_failed(world: World) -> None:
    installed(world)
    world.run()
    ops = world.fake.ops(UNIT)
    assert ops.index("reset_failed") < ops.index("restart")


def test_a_full_unit_directory_refuses_with_nothing_changed(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    data = installed(world)
    real = fsutil.atomic_write

    def full(path: Path, payload: bytes, **kw: object) -> None:
        if path == world.unit_path:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, payload, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(fsutil, "atomic_write", full)
    with pytest.raises(InputError, match="cannot write the new unit: No space left on device") as info:
        world.run(unit_file=_write(world, unit_text(bind="127.0.0.1:8001")))
    assert info.value.exit_code == ExitCode.REFUSED
    assert world.unit_path.read_bytes() == data and world.head() == world.revs["v1"]
    assert not {"restart", "daemon_reload", "stop"} & set(world.fake.ops())
    assert world.records()[-1].outcome == "refused"


def test_the_rollback_guard_has_its_own_timeout(world: World) -> None:
    installed(world)
    # The previous release needs 3 s to answer ready again; the deploy was given 1 s.
    restarted_at: list[float] = []

    def answer() -> int:
        if world.head() == world.revs["v2"]:
            return 503
        if not restarted_at:
            restarted_at.append(world.clock.now)
        return 200 if world.clock.now - restarted_at[0] >= 3.0 else 503

    world.answer_fn = answer
    with pytest.raises(RolledBackError):
        world.run(ready_timeout=1.0)
    assert world.records()[-1].outcome == "rolled-back"


def test_the_lock_does_not_depend_on_the_history_dir(world: World, lock_dir: Path) -> None:
    installed(world)
    with lock.unit_lock(lock.default_dir(), UNIT, command=["unitctl", "apply", "app", "--history-dir", "/else"]):
        with pytest.raises(LockHeldError, match="--history-dir /else"):
            world.run(history_dir=world.tmp / "other-history")
    assert lock.default_dir() == lock_dir


def test_leftover_check_units_are_removed_by_name(world: World) -> None:
    installed(world)
    mine = capture.transient_prefix(UNIT) + "0123456789abcdef.service"
    other = capture.transient_prefix("other.service") + "0123456789abcdef.service"
    world.fake.leftover_transients = {mine, other}
    seen: list[str] = []

    def check(spec: TransientSpec) -> TransientResult:
        seen.append(spec.name_prefix)
        return TransientResult(0, "")

    world.fake.script_transient(check)
    world.run()
    assert world.fake.leftover_transients == {other}  # another unit's check may be running: never touched
    assert seen == [capture.transient_prefix(UNIT)]


def test_a_history_append_never_glues_records(tmp_path: Path) -> None:
    rec = history.Record(time="t", unit=UNIT, command="apply", outcome="ok", exit_code=0, to_rev="a")
    history.append(tmp_path, rec)
    path = tmp_path / history.HISTORY_NAME
    with path.open("ab") as fh:
        fh.write(b'{"time": "t2", "unit": "app.ser')  # a crash cut this line short
    history.append(tmp_path, dataclasses.replace(rec, to_rev="b"))
    assert [r.to_rev for r in history.read(tmp_path)] == ["a", "b"]
    before = path.read_bytes()
    real_write = os.write

    def short_then_full(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.MonkeyPatch.context() as mp, pytest.raises(OSError, match="No space left"):
        mp.setattr(os, "write", short_then_full)
        history.append(tmp_path, dataclasses.replace(rec, to_rev="c"))
    assert path.read_bytes() == before  # the partial line was taken back
    history.append(tmp_path, dataclasses.replace(rec, to_rev="d"))
    assert [r.to_rev for r in history.read(tmp_path)] == ["a", "b", "d"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_dry_run_warns_about_a_dead_deploy_but_does_not_finish_it(world: World) -> None:
    installed(world)
    _died_with(world, Undo("service", was_active=True))
    result = world.run(dry_run=True)
    assert result.exit_code in (0, 1) and "restart" not in world.fake.ops()
    assert "a dry run does not finish it" in world.stderr.getvalue()
    assert unfinished(world) is not None


def test_a_deploy_killed_after_recording_is_closed_not_undone(world: World) -> None:
    installed(world)
    with pytest.MonkeyPatch.context() as mp, pytest.raises(Killed):
        mp.setattr(journal.Journal, "end", lambda self: (_ for _ in ()).throw(Killed("end")))
        world.run()
    restarts = world.fake.ops(UNIT).count("restart")
    assert unfinished(world) is not None
    assert engine.recover(UNIT, history_dir=world.hist, edges=world.edges(), by="status") is None
    assert unfinished(world) is None and [r.outcome for r in world.records()] == ["ok", "ok"]
    assert world.fake.ops(UNIT).count("restart") == restarts and world.head() == world.revs["v2"]


def test_a_journal_that_cannot_be_written_refuses_before_anything_changes(world: World) -> None:
    data = installed(world)
    journal.journal_path(world.hist, UNIT).parent.parent.mkdir(parents=True, exist_ok=True)
    journal.journal_path(world.hist, UNIT).parent.write_text("not a directory")
    with pytest.raises(InputError, match="cannot (read|write) the deploy journal") as info:
        world.run()
    assert info.value.exit_code == ExitCode.REFUSED
    assert set(world.fake.ops()) <= {"state"} and world.unit_path.read_bytes() == data


@pytest.mark.parametrize("step", ["lock", "capture", "verify"])
def test_sigterm_before_the_switch_ends_as_3_with_nothing_changed(
    world: World, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    import signal

    data = installed(world)

    def terminate(name: str, environ: object = None) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(journal, "fault_pause", terminate)
    with pytest.raises(RefusedError, match="interrupted by SIGTERM") as info:
        world.run(unit_file=_write(world, unit_text(bind="127.0.0.1:8001")))
    assert info.value.exit_code == ExitCode.REFUSED
    assert world.unit_path.read_bytes() == data and world.head() == world.revs["v2"]
    assert not {"restart", "daemon_reload", "stop", "run_transient"} & set(world.fake.ops())
    assert unfinished(world) is None
    if step != "lock":
        assert (world.records()[-1].outcome, world.records()[-1].exit_code) == ("interrupted", 3)


def test_the_running_process_is_checked_against_the_recorded_deploys(world: World) -> None:
    installed(world)
    assert world.run().exit_code == 0  # v2 deployed: the record names the process it left running
    rec = world.records()[-1]
    assert rec.invocation_id == world.fake.units[UNIT].invocation_id and rec.running_rev == world.revs["v2"]
    assert world.run().record.outcome == "nothing-to-do"
    # Someone restarts the service behind unitctl's back (from a tree that may have been elsewhere then).
    world.fake.units[UNIT] = dataclasses.replace(world.fake.units[UNIT], invocation_id="f" * 32)
    result = world.run()
    assert result.record.outcome == "ok" and result.plan is not None and result.plan.action == "restart"
    assert "not started by a recorded deploy" in result.plan.why
    assert world.run().record.outcome == "nothing-to-do"


def test_a_process_known_to_run_another_revision_is_a_code_change() -> None:
    from unitctl.gitrepo import RollbackTarget
    from unitctl.systemd.fake import running_state

    args = {
        "unit": UNIT, "unit_path": Path("/etc/systemd/system/app.service"), "installed": b"[Service]\n",
        "candidate": b"[Service]\n", "state": running_state(UNIT), "deployed_rev": "b" * 40,
        "rollback": RollbackTarget("a" * 40, "history"), "to_rev": "b" * 40, "preload": False, "strategy": "auto",
    }  # fmt: skip
    assert model.make_plan(model.PlanInput(**args, running_rev="b" * 40)).action == "none"  # type: ignore[arg-type]
    plan = model.make_plan(model.PlanInput(**args, running_rev="a" * 40))  # type: ignore[arg-type]
    assert plan.code_changed and plan.action == "reload"
    plan = model.make_plan(model.PlanInput(**args, running_unrecorded=True))  # type: ignore[arg-type]
    assert plan.action == "restart" and not plan.code_changed


def test_a_dropped_undo_is_dropped_in_the_journal_too(world: World) -> None:
    j = journal.Journal(world.hist, UNIT)
    j.begin(unit=UNIT, command="apply")
    j.step("unit-write", undo=Undo("unit", path="/u", sha256=None))
    j.drop("unit")
    tx = j.unfinished()
    assert tx is not None and tx.undo_log().entries() == [] and not tx.undo_log().touched_systemd


def test_a_dead_deploy_in_another_history_dir_is_finished_too(world: World) -> None:
    data = installed(world)
    with killed_at("guard"):
        world.run(unit_file=_write(world, unit_text(bind="127.0.0.1:8001")))
    # Someone runs the next command with another (or the default) --history-dir.
    elsewhere = world.tmp / "elsewhere"
    rec = engine.recover(UNIT, history_dir=elsewhere, edges=world.edges(), by="apply")
    assert rec is not None and rec.outcome == "interrupted" and world.unit_path.read_bytes() == data
    assert world.records()[-1].tx == rec.tx  # recorded where the dead deploy recorded its attempts
    assert history.read(elsewhere, UNIT) == [] and unfinished(world) is None


@pytest.mark.parametrize("step", ["live-build", "post-ready"])
def test_a_deploy_killed_at_a_hook_has_its_hook_stopped_then_the_previous_release_rebuilt(
    world: World, step: str
) -> None:
    installed(world)
    git(world.repo, "checkout", "-q", world.revs["v1"])  # v2 is deployed with --rev: checked out by the switch
    with killed_at(step):
        world.run(unit_file=_write(world, unit_text(bind="127.0.0.1:8001")), rev=world.revs["v2"],
                  build_cmd=("/bin/true build",), post_ready_cmd=("/bin/true warm",))  # fmt: skip
    hook_unit = "unitctl-run-app-0123456789abcdef.service"
    world.fake.leftover_transients.add(hook_unit)  # systemd still runs the dead deploy's hook
    before, calls = len(world.fake.transient_specs), len(world.fake.calls)
    rec = engine.recover(UNIT, history_dir=world.hist, edges=world.edges(), by="status")
    assert rec is not None and (rec.outcome, rec.exit_code) == ("interrupted", 4)
    assert hook_unit not in world.fake.leftover_transients
    ops = [c[0] for c in world.fake.calls[calls:]]
    assert ops.index("remove_transient_units") < ops.index("run_transient")  # stopped before the undo's rebuild
    # The rebuild of v1: after its checkout, with the unit it runs with (from the history), never as root.
    (rebuild,) = world.fake.transient_specs[before:]
    assert (list(rebuild.argv), rebuild.user, rebuild.cwd) == (["/bin/true", "build"], "www-data", str(world.repo))
    assert world.head() == world.revs["v1"]
