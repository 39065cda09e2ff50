"""The deploy engine: lock → recover → capture → plan → pre-flight → switch → guard → (undo), journaled.

Facts are captured once into a frozen ``Facts``; ``model.plan_from`` decides what to do. Every step that
changes the world (checkout, unit write, daemon-reload, restart) first registers its undo in an ``UndoLog``
and appends its intent to the unit's journal, then acts. Any failure after that runs the undo log with
SIGINT/SIGTERM held off; a deploy that died is finished the same way by the next command (``recover``).
Every way out ends in a known state:

- refused before systemd was touched (bad unit, dirty tree, broken import, lock held, full disk): exit 3,
  the service untouched; after a rejected release the working tree is put back at the last good revision;
- the release failed after the switch: the undo log (previous revision, previous unit bytes or no unit,
  daemon-reload, reset-failed, restart) and the readiness check on the previous release, exit 4 when it
  is verified ready, exit 5 when not;
- Ctrl-C / SIGTERM: the same undo; SIGHUP and a closed stdout/stderr change nothing about the outcome.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

from unitctl import fsutil, history, masking, sigterm, unitpath
from unitctl.config import is_positive_number
from unitctl.deploy import hooks, signals
from unitctl.deploy.attempt import (
    Attempt,
    TransactionError,
    conclude,
    fail,
    git_findings,
    guard_phase,
    journal_excerpt,
    now_iso,
    reload_tracked,
    running_now,
)
from unitctl.deploy.capture import capture
from unitctl.deploy.journal import Journal, Transaction, history_dirs, remember
from unitctl.deploy.model import DEFAULT_HOOK_TIMEOUT, ApplyRequest, ApplyResult, Edges, Facts, Plan, parse_strategy
from unitctl.deploy.preflight import needs_checkout, preflight, rebuild, reject_on_failure
from unitctl.deploy.progress import Reporter
from unitctl.deploy.rollback import restore_files, rollback
from unitctl.deploy.signals import Interrupted
from unitctl.deploy.undo import Undo
from unitctl.errors import ExitCode, InputError, LockHeldError, RefusedError, SystemdError, UnitctlError, UsageError
from unitctl.history import Record
from unitctl.probe import ProbeResult


def run(req: ApplyRequest, edges: Edges) -> ApplyResult:
    """Run one guarded (or plain) apply under the unit's lock; raise the UnitctlError it ends with."""
    result, error = run_result(req, edges)
    if error is not None:
        raise error
    return result


def run_result(req: ApplyRequest, edges: Edges) -> tuple[ApplyResult, UnitctlError | None]:
    """Run one apply; return its result and the error to exit with (None on success).

    Usage errors are raised (there is no attempt); a refusal because the lock is held is recorded, then raised.
    The caller going away (SIGHUP, closed output) changes nothing: the outcome is journaled and recorded.
    """
    if edges.reporter is None:
        edges.reporter = Reporter()
    _validate(req)
    probe = edges.probe_factory(req.ready_url) if req.guarded and req.ready_url else None
    record = Record(time=now_iso(), unit=req.unit, command=req.command, outcome="ok", exit_code=0)
    record.repo = str(req.repo) if req.repo else None
    record.ready_url = req.ready_url
    record.strategy = req.strategy
    decided: list[tuple[ApplyResult, UnitctlError | None]] = []
    with signals.caller_independent(edges.install_signal_handlers):
        try:
            with sigterm.raising(Interrupted, enabled=edges.install_signal_handlers), _locked(req, edges, record):
                _attempt(req, edges, record, probe, decided)
        except (KeyboardInterrupt, Interrupted) as exc:
            if decided:
                return decided[0]  # the outcome was recorded before the signal: it stands
            signame = exc.signame if isinstance(exc, Interrupted) else "SIGINT"
            raise RefusedError(
                f"{req.unit}: interrupted by {signame} before the transaction began", hint="nothing was changed"
            ) from None
    return decided[0]


def _attempt(
    req: ApplyRequest,
    edges: Edges,
    record: Record,
    probe: Callable[[], ProbeResult] | None,
    decided: list[tuple[ApplyResult, UnitctlError | None]],
) -> None:
    """Under the lock: finish a dead transaction of the unit, then run and record this one into ``decided``."""
    assert edges.reporter is not None
    journal = Journal(req.history_dir, req.unit)
    if not req.dry_run:
        recover(req.unit, history_dir=req.history_dir, edges=edges, by=req.command)
    elif (dead := journal.unfinished()) is not None:
        edges.reporter.line(
            f"warning: an earlier {dead.begin.get('command')} (pid {dead.begin.get('pid')}) died at step "
            f"{dead.last_step}; a dry run does not finish it (apply, rollback or status will)"
        )
    if not req.dry_run:
        record.tx = _begin(journal, req, record)
    att = Attempt(req=req, edges=edges, record=record, journal=journal, probe=probe)
    error: UnitctlError | None = None
    try:
        result = _transaction(att)
    except TransactionError as exc:
        result, error = exc.result, exc.error
    # The outcome is decided: a signal now must not lose its record, nor turn it into another one.
    with signals.held(edges.install_signal_handlers):
        _finish(att, result)
        decided.append((result, error))


def _begin(journal: Journal, req: ApplyRequest, record: Record) -> str:
    """Start the journal of this attempt; without a journal there is no safe deploy: refuse, nothing changed."""
    try:
        tx = journal.begin(
            unit=req.unit, command=req.command, argv=list(req.argv), time=record.time, repo=record.repo,
            ready_url=req.ready_url, ready_interval=req.ready_interval, successes_needed=req.successes_needed,
            strategy=req.strategy,
        )  # fmt: skip
        remember(req.history_dir, req.unit)
        return tx
    except OSError as exc:
        raise InputError(
            f"cannot write the deploy journal {journal.path}: {exc.strerror}",
            hint="check --history-dir: permissions and free space (nothing was changed)",
        ) from exc


@contextlib.contextmanager
def _locked(req: ApplyRequest, edges: Edges, record: Record) -> Iterator[None]:
    """Hold the unit's lock; a refusal because it is held is recorded (not for a dry run), then raised."""
    from unitctl import lock
    from unitctl.deploy.journal import fault_pause

    fault_pause("lock")
    directory = lock.default_dir()
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(lock.unit_lock(directory, req.unit, command=req.argv or None))
        except LockHeldError as exc:
            record.outcome, record.exit_code, record.reason = "refused", int(exc.exit_code), str(exc)
            if not req.dry_run:
                with contextlib.suppress(OSError, UnitctlError):
                    history.append(req.history_dir, record)
            raise
        yield


def _validate(req: ApplyRequest) -> None:
    parse_strategy(req.strategy)
    if req.guarded and not req.ready_url:
        raise UsageError(
            f"a guarded apply of {req.unit} needs a readiness URL",
            hint="pass --ready-url http://127.0.0.1:PORT/health/ready (or set ready_url in [apply] of unitctl.toml)",
        )
    if not (is_positive_number(req.ready_timeout) and is_positive_number(req.ready_interval)):
        raise UsageError(
            "--ready-timeout and --ready-interval must be finite numbers of seconds above 0",
            hint="e.g. --ready-timeout 60 --ready-interval 0.5",
        )
    if isinstance(req.fail_after, bool) or not isinstance(req.fail_after, int) or req.fail_after < 0:
        raise UsageError(f"--fail-after must be a whole number of answers, 0 or more (got {req.fail_after!r})",
                         hint="e.g. --fail-after 10, or 0 to wait out --ready-timeout")  # fmt: skip
    if req.pre_import and req.no_pre_import:
        raise UsageError("--pre-import and --no-pre-import contradict each other", hint="pass one of them")
    if req.pre_import:
        from unitctl.preimport import parse_app_spec

        parse_app_spec(req.pre_import)
    for point, commands in (("build", req.build_cmd), ("pre-switch", req.pre_switch_cmd),
                            ("post-ready", req.post_ready_cmd)):  # fmt: skip
        for command in commands:
            hooks.split(point, command)
    if req.build_cmd and req.repo is None:
        raise UsageError("--build-cmd runs in the app's checkout", hint="pass --repo DIR too")
    if req.post_ready_cmd and not req.guarded:
        raise UsageError(
            "--post-ready-cmd runs once the guard said the new release is ready, and a failure rolls it back",
            hint="pass --guarded (with --ready-url), or run the command after the apply yourself",
        )
    if not is_positive_number(req.hook_timeout):
        raise UsageError("--hook-timeout must be a finite number of seconds above 0", hint="e.g. --hook-timeout 600")
    if req.rev is not None and req.repo is None:
        raise UsageError("--rev needs --repo DIR (the checkout to switch)", hint="pass --repo DIR, the app's checkout")


def _finish(att: Attempt, result: ApplyResult) -> None:
    """Record the attempt: journal the decided outcome, append it to the history, close the transaction."""
    rec = att.record
    rec.exit_code = result.exit_code
    rec.reason = masking.mask(rec.reason, att.env)
    rec.journal = [masking.mask(line, att.env) for line in rec.journal]
    rec.output = masking.mask(rec.output, att.env)[-20000:]
    if att.req.dry_run:
        return
    _record(att.journal, att.req.history_dir, rec, att.reporter)


def _record(journal: Journal, history_dir: Path, rec: Record, reporter: Reporter) -> None:
    try:
        journal.step("record", record=rec.to_json())
    except OSError as exc:
        reporter.line(f"warning: could not journal the outcome in {journal.path}: {exc}")
    try:
        history.append(history_dir, rec)
    except (OSError, UnitctlError) as exc:
        reporter.line(f"warning: could not record this attempt in {history_dir}: {exc}")
        return  # the journal keeps the outcome: the next command records it
    with contextlib.suppress(OSError):
        journal.end()


def _transaction(att: Attempt) -> ApplyResult:
    try:
        att.step("capture")
        capture(att)
        assert att.plan is not None
        if not att.plan.changes:
            return _finish_without_switch(att)
        preflight(att)
        if att.req.dry_run:
            return _finish_without_switch(att)
        _switch(att)
        plan = att.plan
        if not att.req.guarded:
            return conclude(att, "ok", ExitCode.OK, f"{att.req.unit}: applied ({plan.action}), not guarded")
        att.step("guard")
        outcome = guard_phase(att, "guard", att.req.ready_timeout, fail_after=att.req.fail_after)
        if outcome.ready:
            if att.req.post_ready_cmd:
                # A failure here raises into the rollback below: the release is not done until its hooks are.
                att.step("post-ready")
                hooks.run(att, "post-ready", att.req.post_ready_cmd)
            _keep_unit(att)
            running_now(att, outcome.last_state, plan.to_rev)
            rev = f" at {plan.to_rev[:12]}" if plan.to_rev else ""
            return conclude(att, "ok", ExitCode.OK, f"{att.req.unit}: deployed{rev} and ready ({outcome.reason})")
        failure = f"the new release failed: {outcome.reason}"
        att.record.reason = failure
        att.record.journal = journal_excerpt(att)
        raise rollback(att, failure, "rolled-back")
    except TransactionError:
        raise
    except (KeyboardInterrupt, Interrupted) as exc:
        signame = exc.signame if isinstance(exc, Interrupted) else "SIGINT"
        raise _on_interrupt(att, signame) from None
    except UnitctlError as exc:
        if att.undo.touched_systemd:
            if isinstance(exc, RefusedError):
                raise rollback(att, str(exc), "rolled-back") from None
            att.record.journal = journal_excerpt(att)
            raise rollback(att, f"the switch failed: {exc}", "rolled-back") from None
        restore_files(att)
        raise fail(att, exc, "refused") from None
    except Exception as exc:
        # A bug or an unexpected OS error: still end in a known state.
        if att.undo.touched_systemd:
            raise rollback(att, f"unexpected error: {type(exc).__name__}: {exc}", "rolled-back") from exc
        restore_files(att)
        raise fail(att, RefusedError(f"{att.req.unit}: unexpected error before the switch: {exc}"), "refused") from exc


def _on_interrupt(att: Attempt, signame: str) -> TransactionError:
    att.record.reason = f"interrupted by {signame}"
    if att.undo.touched_systemd:
        return rollback(att, f"interrupted by {signame} during the deploy", "interrupted")
    restore_files(att)
    return fail(
        att,
        RefusedError(f"{att.req.unit}: interrupted by {signame} before the switch; nothing was changed"),
        "interrupted",
    )


def _finish_without_switch(att: Attempt) -> ApplyResult:
    plan = att.plan
    assert plan is not None
    assert att.facts is not None
    summary = _plan_summary(plan, att.facts.target.describe())
    if att.req.dry_run:
        restore_files(att)
        if plan.changes:
            return conclude(att, "would-change", ExitCode.CHANGES_PENDING, f"{att.req.unit}: dry run: would {summary}")
        return conclude(att, "nothing-to-do", ExitCode.OK, f"{att.req.unit}: dry run: nothing to do ({plan.why})")
    facts = att.facts
    assert facts is not None
    if facts.running_rev is not None or facts.running_ready:
        # Verified just now: the same process, answering ready, started from the deployed revision.
        running_now(att, facts.state, facts.running_rev or plan.to_rev)
    return conclude(att, "nothing-to-do", ExitCode.OK, f"{att.req.unit}: nothing to do ({plan.why})")


def _plan_summary(plan: Plan, unit_line: str) -> str:
    parts = []
    if plan.unit_changed:
        parts.append(unit_line)  # what is written where, and how it is undone (unitpath)
    if plan.socket_changed:
        parts.append(f"write {plan.socket_path}")
    if plan.code_changed and plan.to_rev:
        parts.append(f"deploy revision {plan.to_rev[:12]}")
    parts.append(f"{plan.action} {plan.unit} ({plan.why})")
    return ", ".join(parts)


def _switch(att: Attempt) -> None:
    req, plan, facts = att.req, att.plan, att.facts
    assert plan is not None and facts is not None
    backend = att.edges.backend
    # Once the new release may run, undoing it means the last good code (or where the tree was).
    back_to = facts.rollback.rev if facts.rollback is not None else (facts.head if needs_checkout(att) else None)
    if att.repo is not None and back_to is not None:
        att.register(Undo("tree", rev=back_to, repo=str(att.repo.path), build_cmd=rebuild(att)))
    with att.phase("switch") as detail:
        if plan.unit_changed:
            _write_unit(att, facts)
            detail.append(f"wrote {facts.unit_path}")
        if plan.socket_changed:
            _write_socket(att, facts)
            detail.append(f"wrote {plan.socket_path}")
        if plan.daemon_reload:
            att.step("daemon-reload", Undo("daemon"))
            backend.daemon_reload()
            detail.append("daemon-reload")
        if plan.socket_changed and facts.socket is not None and facts.socket.data is None:
            _enable_socket(att, facts, detail)
        elif plan.socket_changed and facts.socket_active:
            _restart_socket(att, facts, detail)
        # The live checkout moves last, right before the restart: until then a worker the running master
        # respawns loads the release it runs.
        _checkout_live(att, detail)
        # What ran before is restarted by a rollback, what was stopped stays stopped (unitpath decides).
        then = unitpath.undo_plan(facts.target, facts.state).then
        service = Undo("service", was_active=then == "restart", strategy=req.strategy, preload=plan.preload,
                       reloadable=facts.reloadable)  # fmt: skip
        att.step("restart", service)
        att.record.action = plan.action
        if plan.action == "reload":
            reload_tracked(att)
        else:
            att.old_pids = frozenset()
            # A unit that hit its start limit (StartLimitBurst=) refuses a start until it is reset.
            with contextlib.suppress(SystemdError):
                backend.reset_failed(req.unit)
            backend.restart(req.unit)
        _note_switched(att, service)
        detail.append(f"{plan.action} ({plan.why})")


def _checkout_live(att: Attempt, detail: list[str]) -> None:
    """Check the new revision out in the live tree and build it there (the tree's undo is registered already)."""
    req, plan = att.req, att.plan
    assert plan is not None
    if att.repo is not None and plan.to_rev and needs_checkout(att):
        att.step("checkout")
        changed = att.repo.checkout(plan.to_rev)
        detail.append(f"checked out {plan.to_rev[:12]} ({len(changed)} file(s) changed, bytecode purged)")
        att.git_notes_shown = git_findings(att.repo, detail, att.git_notes_shown)
        if req.build_cmd and plan.code_changed:
            att.step("live-build")
            reject_on_failure(att, lambda: hooks.run(att, "build", req.build_cmd))
            detail.append(f"built ({len(req.build_cmd)} hook(s))")


def _note_switched(att: Attempt, service: Undo) -> None:
    """Journal the InvocationID the switch left running: a rollback may HUP that master, and no other."""
    state = att.edges.backend.state(att.req.unit)
    att.register(dataclasses.replace(service, invocation_id=state.invocation_id or None))


def _write_unit(att: Attempt, facts: Facts) -> None:
    snap = facts.installed
    if snap.data is not None:
        # The previous bytes must outlive this process: a later command may have to put them back.
        history.store_unit(att.req.history_dir, snap.data)
    att.step(
        "unit-write",
        Undo(
            "unit",
            path=str(snap.path),
            sha256=snap.sha256,
            mode=snap.mode,
            uid=snap.uid,
            gid=snap.gid,
            first_deploy=unitpath.undo_plan(facts.target, facts.state).stop_first,
        ),
    )
    try:
        fsutil.atomic_write(snap.path, facts.candidate)
    except OSError as exc:
        # An atomic write that failed left the old file in place: nothing changed, so nothing to undo.
        att.unregister("unit")
        raise InputError(
            f"{snap.path}: cannot write the new unit: {exc.strerror}",
            hint="free space in its file system (nothing was changed)",
        ) from exc


def _write_socket(att: Attempt, facts: Facts) -> None:
    """Write the unit's ``.socket`` next to it; its undo (put back, or stop and remove a new one) comes first."""
    snap, data = facts.socket, facts.socket_candidate
    assert snap is not None and data is not None
    if snap.data is not None:
        history.store_unit(att.req.history_dir, snap.data)  # the undo puts these bytes back, maybe from another process
    undo = Undo("socket", path=str(snap.path), sha256=snap.sha256, mode=snap.mode, uid=snap.uid, gid=snap.gid,
                was_active=facts.socket_active)  # fmt: skip
    att.step("socket-write", undo)
    try:
        fsutil.atomic_write(snap.path, data)
    except OSError as exc:
        att.unregister("socket")  # the failed atomic write left the old file in place
        raise InputError(
            f"{snap.path}: cannot write the new socket unit: {exc.strerror}", hint="free space in its file system"
        ) from exc


def _enable_socket(att: Attempt, facts: Facts, detail: list[str]) -> None:
    """Enable a socket this deploy installed, so it listens after a reboot; the restart below starts it."""
    assert facts.socket is not None
    name = facts.socket.path.name
    att.step("socket-enable")  # the socket's undo (a new file) disables it before removing it
    att.edges.backend.enable(name)
    detail.append(f"enabled {name}")


def _restart_socket(att: Attempt, facts: Facts, detail: list[str]) -> None:
    """Restart a listening socket whose file changed: the only way systemd applies a new ``ListenStream=``.

    It closes the listening fd (connections are refused until the socket listens again) and restarts the service
    that Requires= it: rare (the addresses changed), and said in the phase line.
    """
    assert facts.socket is not None
    name = facts.socket.path.name
    att.step("socket-restart")  # the socket's undo restarts it again with its previous file
    att.edges.backend.restart(name)
    detail.append(f"restarted {name} (its listening socket was closed and reopened)")


def _keep_unit(att: Attempt) -> None:
    assert att.facts is not None
    candidate = att.facts.candidate
    att.record.unit_sha256 = fsutil.sha256(candidate)
    try:
        history.store_unit(att.req.history_dir, candidate)
    except (OSError, UnitctlError) as exc:
        att.reporter.line(f"warning: could not keep a copy of the unit for 'unitctl rollback': {exc}")


def recover(unit: str, *, history_dir: Path, edges: Edges, by: str) -> Record | None:
    """Finish a transaction of ``unit`` that died (its lock is held by us now); return what was recorded.

    When it had decided its outcome, that outcome is recorded; otherwise its undo log is run, exactly as
    the dead process would have, and the attempt is recorded as interrupted (exit 4/5, or 3 when it had not
    touched systemd yet). A journal in another history directory (the dead deploy's --history-dir) counts too,
    and its record goes there.
    """
    recorded = None
    for directory in history_dirs(unit, history_dir):
        recorded = _recover_in(unit, directory, edges, by) or recorded
    return recorded


def _recover_in(unit: str, history_dir: Path, edges: Edges, by: str) -> Record | None:
    if edges.reporter is None:
        edges.reporter = Reporter()
    journal = Journal(history_dir, unit)
    tx = journal.unfinished()
    if tx is None:
        return None
    journal.tx = tx.tx
    reporter: Reporter = edges.reporter
    if any(r.tx == tx.tx for r in history.read(history_dir, unit)):
        # Recorded in the history; only the journal's closing line is missing.
        journal.end()
        return None
    if tx.record is not None:
        rec = Record.from_json(tx.record)
        rec.recovered_by = by
        _record(journal, history_dir, rec, reporter)
        reporter.line(f"recorded the outcome of an earlier {rec.command} (pid {tx.begin.get('pid')}): {rec.outcome}")
        return rec
    att = _attempt_from(tx, unit, history_dir, edges, by)
    _stop_leftovers(att)
    pid = tx.begin.get("pid")
    reporter.line(f"an earlier {att.req.command} (pid {pid}) died at step {tx.last_step}: finishing its rollback first")
    failure = f"interrupted at step {tx.last_step} (pid {pid} died); rolled back by 'unitctl {by}'"
    att.record.reason = failure
    if att.undo.touched_systemd:
        error = rollback(att, failure, "interrupted").error
        att.record.exit_code = int(error.exit_code)
        if att.record.outcome == "rollback-failed":
            att.record.journal = att.record.journal or journal_excerpt(att)
        message = str(error)
    else:
        restore_files(att)
        att.record.outcome, att.record.exit_code = "interrupted", int(ExitCode.REFUSED)
        message = f"{unit}: {failure}; nothing in systemd was changed"
    reporter.line(message)
    _record(journal, history_dir, att.record, reporter)
    return att.record


def _stop_leftovers(att: Attempt) -> None:
    """Stop what the dead deploy started as transient units (a hook, the import check, the canary).

    A hook systemd still runs would go on writing into the tree the undo is about to check out or remove.
    """
    from unitctl.deploy.capture import transient_prefix

    try:
        att.edges.backend.remove_transient_units(transient_prefix(att.req.unit))
    except SystemdError as exc:
        att.reporter.line(f"warning: could not stop the dead deploy's transient units: {exc}")


def _attempt_from(tx: Transaction, unit: str, history_dir: Path, edges: Edges, by: str) -> Attempt:
    b = tx.begin
    repo = Path(b["repo"]) if b.get("repo") else None
    req = ApplyRequest(
        unit=unit,
        guarded=bool(b.get("ready_url")),
        repo=repo,
        ready_url=b.get("ready_url"),
        ready_interval=float(b.get("ready_interval") or 0.5),
        ready_timeout=float(b.get("rollback_timeout") or 60.0),
        build_cmd=_commands(b.get("build_cmd")),
        hook_timeout=float(b.get("hook_timeout") or DEFAULT_HOOK_TIMEOUT),
        history_dir=history_dir,
        command=str(b.get("command") or "apply"),
        successes_needed=int(b.get("successes_needed") or 3),
    )
    record = Record(time=str(b.get("time") or now_iso()), unit=unit, command=req.command, outcome="interrupted",
                    exit_code=int(ExitCode.ROLLED_BACK))  # fmt: skip
    record.pid = int(b.get("pid") or 0)
    record.tx, record.interrupted_step, record.recovered_by = tx.tx, tx.last_step, by
    record.repo, record.ready_url, record.strategy = b.get("repo"), req.ready_url, b.get("strategy")
    record.from_rev, record.to_rev = b.get("from_rev"), b.get("to_rev")
    record.rollback_source = b.get("rollback_source")
    record.unit_sha256, record.candidate_sha256 = b.get("unit_sha256"), b.get("candidate_sha256")
    probe = edges.probe_factory(req.ready_url) if req.ready_url else None
    journal = Journal(history_dir, unit)
    journal.tx = tx.tx
    att = Attempt(req=req, edges=edges, record=record, journal=journal, probe=probe, undo=tx.undo_log())
    att.was_active = bool(b.get("was_active", True))
    att.rollback_timeout = req.ready_timeout
    return att


def _commands(value: object) -> tuple[str, ...]:
    """Return a journaled list of hook commands (an older journal has one string, or none)."""
    if isinstance(value, str):
        return (value,)
    return tuple(str(c) for c in value) if isinstance(value, list | tuple) else ()
