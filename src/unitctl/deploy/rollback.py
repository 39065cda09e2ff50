"""Undo: replay the undo log (tree, unit, daemon-reload, service) with signals held, then check the previous release."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from unitctl import fsutil, history
from unitctl.deploy import canary, hooks, signals
from unitctl.deploy.attempt import (
    Attempt,
    TransactionError,
    fail,
    git_findings,
    guard_phase,
    journal_excerpt,
    reload_tracked,
    running_now,
)
from unitctl.deploy.model import choose_rollback_action, parse_strategy
from unitctl.deploy.undo import Undo
from unitctl.errors import InputError, RollbackFailedError, RolledBackError, SystemdError, UnitctlError
from unitctl.gitrepo import GitRepo


def restore_files(att: Attempt) -> None:
    """Put the working tree where the undo log says (nothing in systemd was touched), signals held off."""
    with signals.held(att.edges.install_signal_handlers):
        canary.remove(att)
    tree = att.undo.get("tree")
    if tree is None or tree.repo is None:
        return
    with signals.held(att.edges.install_signal_handlers):
        try:
            unmoved = att.facts is not None and att.facts.head == tree.rev
            if unmoved and GitRepo(Path(tree.repo)).head() == tree.rev:
                return
            with att.phase("restore-tree") as detail:
                _undo_tree(att, tree, detail)
        except UnitctlError as exc:
            att.reporter.line(f"warning: could not put {tree.repo} back at {(tree.rev or '')[:12]}: {exc}")


def _undo_tree(att: Attempt, undo: Undo, detail: list[str]) -> None:
    assert undo.repo is not None and undo.rev is not None
    repo = GitRepo(Path(undo.repo))
    changed = repo.checkout(undo.rev)
    detail.append(f"checked out {undo.rev[:12]} ({len(changed)} file(s), bytecode purged)")
    git_findings(repo, detail)
    if undo.build_cmd:
        # The previous release is rebuilt as it runs: with its unit's identity, in the live tree.
        hooks.run(att, "build", undo.build_cmd, unit_text=hooks.previous_text(att))
        detail.append("build re-run")


def rollback(att: Attempt, failure: str, outcome: history.Outcome) -> TransactionError:
    """Run the undo log with signals held off; return the error (exit 4 or 5) to raise."""
    with signals.held(att.edges.install_signal_handlers) as noted:
        try:
            healthy, state_text = run_undo(att)
        except (UnitctlError, OSError) as exc:
            healthy, state_text = False, f"the rollback itself failed: {exc}"
    # Signals held off during the rollback are delivered (to a handler that only notes them) on unblocking.
    if noted:
        import signal

        names = ", ".join(signal.Signals(s).name for s in noted)
        att.reporter.line(f"{names} received during the rollback: ignored until it finished")
    error, final = _rollback_error(att, failure, outcome, healthy, state_text)
    unit = att.undo.get("unit")
    if unit is not None and unit.path:
        att.record.unit_sha256 = fsutil.snapshot(Path(unit.path)).sha256
    return fail(att, error, final)


def _rollback_error(
    att: Attempt, failure: str, outcome: history.Outcome, healthy: bool, state_text: str
) -> tuple[UnitctlError, history.Outcome]:
    unit = att.req.unit
    rev = att.record.from_rev[:12] if att.record.from_rev and att.record.rollback_source else None
    checked_out = f"; {att.req.repo} is at {_head_or_unknown(att)}" if att.req.repo else ""
    journal = f"; see 'journalctl -u {unit}' and 'unitctl history {unit.removesuffix('.service')}'"
    if healthy:
        prev = f"previous release {rev}" if rev else "previous release"
        return RolledBackError(f"{unit}: {failure}; rolled back to the {prev}: {state_text}{journal}"), outcome
    return (
        RollbackFailedError(
            f"{unit}: {failure}; ROLLBACK FAILED: {state_text}{checked_out}{journal}",
            hint="a human is needed: fix the service by hand, then run 'unitctl status'",
        ),
        "rollback-failed",
    )


def _head_or_unknown(att: Attempt) -> str:
    try:
        return GitRepo(att.req.repo).head()[:12] if att.req.repo else "-"
    except UnitctlError:
        return "an unknown revision"


@dataclass
class _Replay:
    """What replaying the undo log found so far."""

    problems: list[str] = field(default_factory=list)
    removed: bool = False  # a first deploy: the unit is gone again
    restored: bool = False  # the undo changed the unit file systemd loads


def run_undo(att: Attempt) -> tuple[bool, str]:
    """Replay the undo log (tree, unit, daemon-reload, service), then check the previous release."""
    replay = _Replay()
    canary.remove(att)  # a deploy killed during its canary: nothing of it may outlive the rollback
    with att.phase("rollback") as detail:
        for undo in att.undo.entries():
            handler = _REPLAY.get(undo.resource)
            if handler is not None:
                handler(att, undo, replay, detail)
        if att.undo.get("service") is None and not replay.removed:
            # The unit was written but systemd never restarted the service: the old process still runs.
            detail.append("not restarted: the running service was never switched")
    return _verdict(att, replay, detail)


def _replay_tree(att: Attempt, undo: Undo, replay: _Replay, detail: list[str]) -> None:
    att.announce("rollback-checkout")
    try:
        _undo_tree(att, undo, detail)
    except UnitctlError as exc:
        replay.problems.append(f"checkout/build of {(undo.rev or '')[:12]} failed: {exc}")


def _replay_unit(att: Attempt, undo: Undo, replay: _Replay, detail: list[str]) -> None:
    att.announce("rollback-unit")
    replay.removed, wrote = _undo_unit(att, undo, detail)
    replay.restored = replay.restored or wrote
    if wrote and att.undo.get("daemon") is None:
        # The deploy died between its unit write and its daemon-reload: systemd must load the file put
        # back too (a rewritten file is NeedDaemonReload=yes even with the old bytes: its mtime moved).
        with contextlib.suppress(SystemdError):
            att.edges.backend.reset_failed(att.req.unit)
        att.edges.backend.daemon_reload()
        detail.append("daemon-reload")


def _replay_socket(att: Attempt, undo: Undo, replay: _Replay, detail: list[str]) -> None:
    att.announce("rollback-socket")
    # A socket put back or removed means new listening fds: the service restarts to take them.
    replay.restored = _undo_socket(att, undo, detail) or replay.restored


def _replay_daemon(att: Attempt, undo: Undo, replay: _Replay, detail: list[str]) -> None:
    att.announce("rollback-daemon-reload")
    with contextlib.suppress(SystemdError):
        att.edges.backend.reset_failed(att.req.unit)
    att.edges.backend.daemon_reload()


def _replay_service(att: Attempt, undo: Undo, replay: _Replay, detail: list[str]) -> None:
    att.announce("rollback-restart")
    if replay.removed:
        return
    if not undo.was_active:
        with contextlib.suppress(SystemdError):
            att.edges.backend.stop(att.req.unit)
        detail.append("left stopped, as it was")
        return
    try:
        _bring_back(att, undo, replay.restored, detail)
    except SystemdError as exc:
        replay.problems.append(f"{att.record.rollback_action or 'restart'} of the previous release failed: {exc}")


# How the rollback undoes each resource of the log (the log's order is the order of replay).
_REPLAY: dict[str, Callable[[Attempt, Undo, _Replay, list[str]], None]] = {
    "tree": _replay_tree,
    "unit": _replay_unit,
    "socket": _replay_socket,
    "daemon": _replay_daemon,
    "service": _replay_service,
}


def _verdict(att: Attempt, replay: _Replay, detail: list[str]) -> tuple[bool, str]:
    """Say whether the previous release is back (guarding it when it runs and is guarded), and why."""
    req, problems = att.req, replay.problems
    if replay.removed:
        detail.append("first deploy: no unit left")
        if problems:
            return False, "; ".join(problems)
        return True, f"the first deploy was undone: {req.unit} is not installed"
    if not att.was_active:
        if problems:
            return False, "; ".join(problems)
        return True, f"{req.unit} is stopped, as it was before the deploy"
    if problems:
        return False, "; ".join(problems) + f"; {req.unit} is {_state_text(att)}"
    if att.probe is None:
        state = att.edges.backend.state(req.unit)
        return state.is_active, f"{req.unit} is {state.active_state}/{state.sub_state} (not guarded)"
    att.announce("rollback-guard")
    outcome = guard_phase(att, "rollback-guard", att.rollback_timeout or req.ready_timeout)
    if outcome.ready:
        tree = att.undo.get("tree")
        running_now(att, outcome.last_state, tree.rev if tree is not None else att.record.from_rev)
        return True, f"ready again ({outcome.reason})"
    att.record.journal += ["-- after the rollback --", *journal_excerpt(att)]
    return False, f"the previous release is not ready either: {outcome.reason}"


def _bring_back(att: Attempt, undo: Undo, restored: bool, detail: list[str]) -> None:
    """Reload (HUP) or restart the service onto the previous release, chosen as the deploy chooses; say which."""
    backend, unit = att.edges.backend, att.req.unit
    action, why = choose_rollback_action(
        parse_strategy(undo.strategy or "restart"),
        unit_restored=restored,
        preload=undo.preload,
        reloadable=undo.reloadable,
        state=backend.state(unit),
        switched_invocation=undo.invocation_id,
    )
    if action == "reload":
        try:
            reload_tracked(att)
            att.record.rollback_action = action
            detail.append(f"reloaded ({why})")
            return
        except SystemdError as exc:
            # The previous release must come back either way: a restart still can.
            detail.append(f"the reload failed ({exc}): restarting")
    att.record.rollback_action = "restart"
    att.old_pids = frozenset()
    with contextlib.suppress(SystemdError):
        backend.reset_failed(unit)
    backend.restart(unit)
    detail.append(f"restarted ({why})")


def _undo_unit(att: Attempt, undo: Undo, detail: list[str]) -> tuple[bool, bool]:
    """Put the unit file back, or remove the one the deploy created.

    Return (a first deploy was undone, the file on disk changed). A file that already holds what the undo would
    put back is left alone: rewriting it would only make systemd see a changed file.
    """
    assert undo.path is not None
    path = Path(undo.path)
    # A first deploy: nothing ran before, so stop it before its unit changes back (or disappears).
    first = undo.first_deploy if undo.first_deploy is not None else undo.sha256 is None
    if first:
        with contextlib.suppress(SystemdError):
            att.edges.backend.stop(att.req.unit)
    current = fsutil.snapshot(path)
    if undo.sha256 is None:
        # Otherwise (a vendor copy, a new template file) the unit it shadowed is back once the file is gone.
        if current.data is None:
            detail.append(f"{path} was never written")
            return first, False
        fsutil.remove(path)
        detail.append(f"removed {path}")
        return first, True
    return False, _put_back(att, undo, current, detail)


def _put_back(att: Attempt, undo: Undo, current: fsutil.FileSnapshot, detail: list[str]) -> bool:
    """Restore the file's previous bytes (kept by the deploy); return False when it already holds them, as it was."""
    assert undo.sha256 is not None
    path = current.path
    data = att.kept.get(undo.sha256) or history.stored_unit(att.req.history_dir, undo.sha256)
    if data is None:
        raise InputError(f"the previous {path} ({undo.sha256[:12]}) was not kept: cannot put it back")
    if (current.data, current.mode, current.uid, current.gid) == (data, undo.mode, undo.uid, undo.gid):
        detail.append(f"{path} unchanged")
        return False
    fsutil.restore(fsutil.FileSnapshot(path, data, undo.mode, undo.uid, undo.gid))
    detail.append(f"restored {path}")
    return True


def _undo_socket(att: Attempt, undo: Undo, detail: list[str]) -> bool:
    """Put the unit's ``.socket`` back (restarted when it listened before) or stop and remove the one deployed.

    Return whether the socket changed (then a HUP cannot bring the previous release back: it keeps the old fds).
    """
    assert undo.path is not None
    path, backend = Path(undo.path), att.edges.backend
    current = fsutil.snapshot(path)
    if undo.sha256 is None:
        # Stopping it closes its fd and stops the service that Requires= it: the service's own undo follows.
        # Disabling removes the links enable made (none when the deploy died before it).
        for op in (backend.stop, backend.disable):
            with contextlib.suppress(SystemdError):
                op(path.name)
        if current.data is not None:
            fsutil.remove(path)
            detail.append(f"removed {path}")
        if att.undo.get("daemon") is None:
            backend.daemon_reload()  # the deploy died before its daemon-reload: systemd still has the file loaded
        return True
    if not _put_back(att, undo, current, detail):
        return False
    # systemd applies the old ListenStream= only once it has loaded the file and the socket listens anew.
    backend.daemon_reload()
    if undo.was_active:
        backend.restart(path.name)
        detail.append(f"restarted {path.name}")
    return True


def _state_text(att: Attempt) -> str:
    try:
        s = att.edges.backend.state(att.req.unit)
    except SystemdError:
        return "in an unknown state"
    return f"{s.active_state}/{s.sub_state}"
