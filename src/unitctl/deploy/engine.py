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
import datetime as dt
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from unitctl import fsutil, history
from unitctl.deploy import signals
from unitctl.deploy.journal import Journal, Transaction
from unitctl.deploy.model import (
    STRATEGIES,
    ApplyRequest,
    ApplyResult,
    Edges,
    Facts,
    Plan,
    plan_from,
    rollback_ready_timeout,
)
from unitctl.deploy.output import Reporter
from unitctl.deploy.signals import Interrupted
from unitctl.deploy.undo import Undo, UndoLog
from unitctl.errors import (
    ExitCode,
    GitStateError,
    InputError,
    LockHeldError,
    PreImportError,
    ReadyUrlError,
    RefusedError,
    RollbackFailedError,
    RolledBackError,
    SystemdError,
    UnitctlError,
    UsageError,
    VerificationError,
)
from unitctl.gitrepo import GitRepo
from unitctl.history import Phase, Record
from unitctl.probe import ProbeResult
from unitctl.systemd.base import UnitState

BUILD_TIMEOUT = 1800.0
JOURNAL_LINES = 40
# Pre-flight check of the readiness URL: retry a connection failure for at most this long, this often.
READY_URL_CHECK_SECONDS = 3.0
READY_URL_CHECK_INTERVAL = 0.5
TRANSIENT_PREFIX = "unitctl-run-"


class TransactionError(Exception):
    """Carry an ApplyResult out of the transaction together with the UnitctlError to exit with."""

    def __init__(self, error: UnitctlError, result: ApplyResult) -> None:
        super().__init__(str(error))
        self.error = error
        self.result = result


class _Detail(list[str]):
    """A phase's detail lines, and whether the phase failed without raising."""

    failed: bool = False


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def unit_target(req: ApplyRequest, state: UnitState) -> Path:
    """Return the file a change of ``req.unit`` is written to (the one seam for where units live)."""
    # Units live in req.unit_dir for now; unitpath resolves /usr/lib units (-> a drop-in), template instances and
    # symlinks from state.fragment_path and state.dropin_paths when it is merged in.
    return req.unit_dir / req.unit


@dataclass
class _Attempt:
    """One attempt's bookkeeping: the facts once captured, the undo log, the journal, the record."""

    req: ApplyRequest
    edges: Edges
    record: Record
    journal: Journal
    probe: Callable[[], ProbeResult] | None
    undo: UndoLog = field(default_factory=UndoLog)
    facts: Facts | None = None
    plan: Plan | None = None
    repo: GitRepo | None = None
    env: dict[str, str] = field(default_factory=dict)
    kept: dict[str, bytes] = field(default_factory=dict)  # unit bytes the undo may put back, by sha256
    rollback_timeout: float = 0.0
    was_active: bool = True

    @property
    def reporter(self) -> Reporter:
        assert self.edges.reporter is not None
        return self.edges.reporter

    def register(self, undo: Undo) -> None:
        """Register ``undo`` (a new target for its resource), in the journal and then in memory."""
        self.journal.register(undo)
        self.undo.register(undo)

    def step(self, name: str, undo: Undo | None = None) -> None:
        """Announce step ``name`` with its undo in the journal, then register the undo; the step acts after.

        A journal that cannot be written stops the step before it acts: nothing to undo for it then.
        """
        try:
            self.journal.step(name, undo=undo)
        except OSError as exc:
            raise InputError(
                f"cannot write the deploy journal {self.journal.path}: {exc.strerror}",
                hint=f"free space in --history-dir; step {name} was not done",
            ) from exc
        if undo is not None:
            self.undo.register(undo)

    def announce(self, name: str) -> None:
        """Announce a rollback step; the rollback goes on even when the journal cannot be written."""
        try:
            self.journal.step(name)
        except OSError as exc:
            self.reporter.line(f"warning: could not journal {name} in {self.journal.path}: {exc.strerror}")

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[_Detail]:
        """Time a phase; the block may append a detail; record it (failed when it raises or sets ``failed``)."""
        detail = _Detail()
        t0 = self.edges.clock()
        ok = False
        try:
            yield detail
            ok = not detail.failed
        finally:
            p = Phase(name, round(self.edges.clock() - t0, 3), ok, history.mask_secrets("; ".join(detail), self.env))
            self.record.phases.append(p)
            self.reporter.phase(p)


# -- entry ----------------------------------------------------------------------------------------------


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
            with signals.raising(edges.install_signal_handlers), _locked(req, edges, record):
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
    att = _Attempt(req=req, edges=edges, record=record, journal=journal, probe=probe)
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
        return journal.begin(
            unit=req.unit, command=req.command, argv=list(req.argv), time=record.time, repo=record.repo,
            ready_url=req.ready_url, ready_interval=req.ready_interval, successes_needed=req.successes_needed,
            strategy=req.strategy,
        )  # fmt: skip
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
    if req.strategy not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {req.strategy!r}")
    if req.guarded and not req.ready_url:
        raise UsageError(
            f"a guarded apply of {req.unit} needs a readiness URL",
            hint="pass --ready-url http://127.0.0.1:PORT/health/ready (or set ready_url in [apply] of unitctl.toml)",
        )
    if req.ready_timeout <= 0 or req.ready_interval <= 0:
        raise UsageError("--ready-timeout and --ready-interval must be positive")
    if req.pre_import and req.no_pre_import:
        raise UsageError("--pre-import and --no-pre-import contradict each other", hint="pass one of them")
    if req.pre_import:
        from unitctl.preimport import parse_target

        parse_target(req.pre_import)
    if req.build_cmd is not None:
        try:
            if not shlex.split(req.build_cmd):
                raise ValueError("empty")
        except ValueError as exc:
            raise UsageError(f"--build-cmd {req.build_cmd!r} is not a command line: {exc}") from exc
        if req.repo is None:
            raise UsageError("--build-cmd runs in the app's checkout: pass --repo too")
    if req.rev is not None and req.repo is None:
        raise UsageError("--rev needs --repo DIR (the checkout to switch)")


def _finish(att: _Attempt, result: ApplyResult) -> None:
    """Record the attempt: journal the decided outcome, append it to the history, close the transaction."""
    rec = att.record
    rec.exit_code = result.exit_code
    rec.reason = history.mask_secrets(rec.reason, att.env)
    rec.journal = [history.mask_secrets(line, att.env) for line in rec.journal]
    rec.output = history.mask_secrets(rec.output, att.env)[-20000:]
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


def _result(att: _Attempt, outcome: history.Outcome, code: ExitCode, message: str) -> ApplyResult:
    att.record.outcome = outcome
    att.record.exit_code = int(code)
    if outcome != "ok":
        att.record.reason = att.record.reason or message
    return ApplyResult(record=att.record, plan=att.plan, message=history.mask_secrets(message, att.env), exit_code=code)


def _fail(att: _Attempt, error: UnitctlError, outcome: history.Outcome) -> TransactionError:
    error.message = history.mask_secrets(error.message, att.env)
    return TransactionError(error, _result(att, outcome, error.exit_code, str(error)))


# -- the transaction --------------------------------------------------------------------------------------


def _transaction(att: _Attempt) -> ApplyResult:
    try:
        att.step("capture")
        _capture(att)
        assert att.plan is not None
        if not att.plan.changes:
            return _finish_without_switch(att)
        _preflight(att)
        if att.req.dry_run:
            return _finish_without_switch(att)
        _switch(att)
        plan = att.plan
        if not att.req.guarded:
            return _result(att, "ok", ExitCode.OK, f"{att.req.unit}: applied ({plan.action}), not guarded")
        att.step("guard")
        outcome = _guard(att, "guard", att.req.ready_timeout)
        if outcome.ready:
            _keep_unit(att)
            _running_now(att, outcome.last_state, plan.to_rev)
            rev = f" at {plan.to_rev[:12]}" if plan.to_rev else ""
            return _result(att, "ok", ExitCode.OK, f"{att.req.unit}: deployed{rev} and ready ({outcome.reason})")
        failure = f"the new release failed: {outcome.reason}"
        att.record.reason = failure
        att.record.journal = _journal(att)
        raise _rollback(att, failure, "rolled-back")
    except TransactionError:
        raise
    except (KeyboardInterrupt, Interrupted) as exc:
        signame = exc.signame if isinstance(exc, Interrupted) else "SIGINT"
        raise _on_interrupt(att, signame) from None
    except UnitctlError as exc:
        if att.undo.touched_systemd:
            if isinstance(exc, RefusedError):
                raise _rollback(att, str(exc), "rolled-back") from None
            att.record.journal = _journal(att)
            raise _rollback(att, f"the switch failed: {exc}", "rolled-back") from None
        _restore_files(att)
        raise _fail(att, exc, "refused") from None
    except Exception as exc:
        # A bug or an unexpected OS error: still end in a known state.
        if att.undo.touched_systemd:
            raise _rollback(att, f"unexpected error: {type(exc).__name__}: {exc}", "rolled-back") from exc
        _restore_files(att)
        raise _fail(att, RefusedError(f"{att.req.unit}: unexpected error before the switch: {exc}"), "refused") from exc


def _on_interrupt(att: _Attempt, signame: str) -> TransactionError:
    att.record.reason = f"interrupted by {signame}"
    if att.undo.touched_systemd:
        return _rollback(att, f"interrupted by {signame} during the deploy", "interrupted")
    _restore_files(att)
    return _fail(
        att,
        RefusedError(f"{att.req.unit}: interrupted by {signame} before the switch; nothing was changed"),
        "interrupted",
    )


def _finish_without_switch(att: _Attempt) -> ApplyResult:
    plan = att.plan
    assert plan is not None
    summary = _plan_summary(plan)
    if att.req.dry_run:
        _restore_files(att)
        if plan.changes:
            return _result(att, "would-change", ExitCode.CHANGES_PENDING, f"{att.req.unit}: dry run: would {summary}")
        return _result(att, "nothing-to-do", ExitCode.OK, f"{att.req.unit}: dry run: nothing to do ({plan.why})")
    facts = att.facts
    assert facts is not None
    if facts.running_rev is not None or facts.running_ready:
        # Verified just now: the same process, answering ready, started from the deployed revision.
        _running_now(att, facts.state, facts.running_rev or plan.to_rev)
    return _result(att, "nothing-to-do", ExitCode.OK, f"{att.req.unit}: nothing to do ({plan.why})")


def _running_now(att: _Attempt, state: UnitState | None, rev: str | None) -> None:
    """Record which process runs (verified) and the revision it was started from."""
    if state is not None and state.invocation_id:
        att.record.invocation_id, att.record.running_rev = state.invocation_id, rev


def _plan_summary(plan: Plan) -> str:
    parts = []
    if plan.unit_changed:
        parts.append(f"{'install' if plan.first_deploy else 'replace'} {plan.unit_path}")
    if plan.code_changed and plan.to_rev:
        parts.append(f"deploy revision {plan.to_rev[:12]}")
    parts.append(f"{plan.action} {plan.unit} ({plan.why})")
    return ", ".join(parts)


# -- capture ------------------------------------------------------------------------------------------------


def _capture(att: _Attempt) -> None:
    req = att.req
    backend = att.edges.backend
    with att.phase("capture") as detail:
        removed = [] if req.dry_run else _remove_stale_checks(att)
        if removed:
            detail.append(f"removed {len(removed)} leftover check unit(s)")
        state = backend.state(req.unit)
        unit_path = unit_target(req, state)
        snapshot = fsutil.snapshot(unit_path)
        candidate = _candidate(req, snapshot, state, detail)
        records = history.read(req.history_dir, req.unit)
        last = history.last_good(records)
        deployed_rev = last.to_rev if last else None
        head: str | None = None
        to_rev: str | None = None
        rollback = None
        if req.repo is not None:
            att.repo = GitRepo(req.repo)
            att.repo.check_repo()
            att.repo.check_clean()
            head = att.repo.head()
            recorded = last.to_rev if last and last.repo == str(req.repo) else None
            rollback = att.repo.rollback_target(recorded)
            if rollback is None and snapshot.data is not None:
                shallow = att.repo.is_shallow()
                raise GitStateError(
                    f"{req.repo}: no revision to roll back to (no deploy recorded, no ORIG_HEAD, reflog or parent"
                    f"{'; the clone is shallow' if shallow else ''})",
                    hint="fetch more history (git fetch --unshallow)"
                    if shallow
                    else "deploy from a repository with at least two commits, or record a first deploy",
                )
            if req.rev is not None:
                target = att.repo.resolve(req.rev)
                if target is None:
                    raise GitStateError(f"{req.repo} has no revision {req.rev!r}", hint="fetch it or fix --rev")
                to_rev = target
            else:
                to_rev = head
            detail.append(f"HEAD {head[:12]}")
            if rollback is not None:
                detail.append(f"rollback target {rollback.rev[:12]} (from {rollback.source})")
                att.record.rollback_source = rollback.source
            else:
                # Nothing ran before: a failed first deploy is undone by removing the unit.
                detail.append("first deploy: no earlier revision to roll back to")
        from unitctl.preimport import service_view

        view = service_view(candidate.decode("utf-8", "replace"), unit=req.unit, unit_dir=req.unit_dir)
        att.env = dict(view.env)
        facts = Facts(
            unit=req.unit,
            unit_path=unit_path,
            installed=snapshot,
            state=state,
            candidate=candidate,
            preload=view.preload,
            head=head,
            to_rev=to_rev,
            deployed_rev=deployed_rev,
            rollback=rollback,
            previous_ready_seconds=_ready_seconds(last),
            **_running(records, state),
        )
        plan = plan_from(facts, req.strategy)
        if not plan.changes and att.probe is not None:
            # "Nothing to do" only when the running release really serves: ask it once.
            answer = att.probe()
            facts = replace(facts, running_ready=answer.ok)
            plan = plan_from(facts, req.strategy)
            detail.append(f"running release: {answer.describe()}")
        att.facts, att.plan, att.was_active = facts, plan, state.is_active
        att.rollback_timeout = rollback_ready_timeout(req.ready_timeout, facts.previous_ready_seconds)
        att.record.from_rev = rollback.rev if rollback else deployed_rev
        att.record.to_rev = to_rev
        att.record.unit_sha256 = snapshot.sha256
        att.record.candidate_sha256 = fsutil.sha256(candidate)
        if snapshot.data is not None:
            att.kept[fsutil.sha256(snapshot.data)] = snapshot.data
        if state.need_daemon_reload:
            detail.append("NeedDaemonReload=yes: systemd runs an older copy of the unit")
        if facts.running_unrecorded:
            detail.append(f"the running process (InvocationID {state.invocation_id[:12]}) was not started by a deploy")
        detail.append(
            f"unit {'absent' if snapshot.data is None else 'installed'}, "
            f"{state.active_state}/{state.sub_state} (backend {backend.name})"
        )
    att.journal.note(
        from_rev=att.record.from_rev, to_rev=to_rev, rollback_source=att.record.rollback_source,
        unit_sha256=snapshot.sha256, candidate_sha256=att.record.candidate_sha256, was_active=state.is_active,
        rollback_timeout=att.rollback_timeout, build_cmd=req.build_cmd,
    )  # fmt: skip


def _remove_stale_checks(att: _Attempt) -> list[str]:
    """Stop and forget import-check units an earlier run of this unit left behind (a kill -9 mid-check)."""
    try:
        return att.edges.backend.remove_transient_units(transient_prefix(att.req.unit))
    except SystemdError as exc:
        att.reporter.line(f"warning: could not remove leftover check units: {exc}")
        return []


def transient_prefix(unit: str) -> str:
    """Return the name prefix of the import-check units of ``unit`` (removed by name on the next run)."""
    stem = unit.rsplit(".", 1)[0].replace("@", "-").replace("\\", "-")
    return f"{TRANSIENT_PREFIX}{stem}-"


def _running(records: list[Record], state: UnitState) -> dict[str, Any]:
    """Return what the history says about the process running now: its revision, or that no deploy started it."""
    if not state.invocation_id:
        return {}
    for rec in reversed(records):
        if rec.invocation_id == state.invocation_id:
            return {"running_rev": rec.running_rev}
    good = history.last_good(records)
    # Only when deploys record their process: older histories (and first deploys) know nothing either way.
    return {"running_unrecorded": bool(good is not None and good.invocation_id)}


def _ready_seconds(record: Record | None) -> float | None:
    if record is None:
        return None
    seconds = [p.seconds for p in record.phases if p.name == "guard" and p.ok]
    return seconds[-1] if seconds else None


def _candidate(req: ApplyRequest, snapshot: fsutil.FileSnapshot, state: UnitState, detail: _Detail) -> bytes:
    if req.unit_bytes is not None:
        return req.unit_bytes
    if req.unit_file is not None:
        return fsutil.read_unit_bytes(req.unit_file, hint="check --unit-file")
    data, path = _installed_unit(req, snapshot, state.fragment_path)
    if req.rewrite is None:
        return data
    from unitctl.desired import check_rewrite_target, rewrite_text
    from unitctl.preimport import _dropins

    # The same rewrite 'unitctl diff NAME --workers/--no-preload' shows; a drop-in that replaced ExecStart=
    # would make a rewrite of the unit file a no-op that still restarts the service.
    installed_text = data.decode("utf-8", "surrogateescape")
    check_rewrite_target(installed_text, path=path, dropins=_dropins(req.unit, req.unit_dir), unit=req.unit)
    text, warnings = rewrite_text(installed_text, req.rewrite, path=path)
    detail.extend(f"warning: {w}" for w in warnings)
    return text.encode("utf-8", "surrogateescape")


def _installed_unit(req: ApplyRequest, snapshot: fsutil.FileSnapshot, fragment: str) -> tuple[bytes, str]:
    """Return the installed unit's bytes and path (the unit kept, or the one a rewrite starts from)."""
    if snapshot.data is not None:
        return snapshot.data, str(snapshot.path)
    if fragment:
        try:
            return Path(fragment).read_bytes(), fragment
        except OSError as exc:
            raise InputError(f"{fragment}: cannot read the installed unit: {exc.strerror}") from exc
    what = "rewrite" if req.rewrite is not None else "keep"
    raise InputError(
        f"{req.unit} is not installed in {req.unit_dir} and no --unit-file was given: there is no unit to {what}",
        hint="pass --unit-file FILE or --render for a first deploy",
    )


# -- pre-flight -------------------------------------------------------------------------------------------


def _preflight(att: _Attempt) -> None:
    req, plan, facts = att.req, att.plan, att.facts
    assert plan is not None and facts is not None
    if att.probe is not None:
        att.step("ready-url")
        with att.phase("ready-url") as detail:
            _check_ready_url(att, att.probe, detail)
    att.step("verify")
    with att.phase("verify") as detail:
        report = _verify(att)
        if report is not None:
            if report.errors:
                more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
                raise VerificationError(
                    f"{req.unit}: the new unit does not verify: {report.errors[0]}{more}",
                    hint="fix the unit; nothing was changed",
                )
            detail.append(f"{len(report.warnings)} warning(s)" if report.warnings else "clean")
        else:
            detail.append("skipped")
    if att.repo is not None and plan.to_rev and facts.head != plan.to_rev and not req.dry_run:
        att.step("checkout", Undo("tree", rev=facts.head, repo=str(att.repo.path)))
        with att.phase("checkout") as detail:
            changed = att.repo.checkout(plan.to_rev)
            detail.append(f"{plan.to_rev[:12]} ({len(changed)} file(s) changed, bytecode purged)")
    if req.build_cmd and not req.dry_run and plan.code_changed:
        att.step("build")
        with att.phase("build") as detail:
            _reject_on_failure(att, lambda: _build(att, req.build_cmd or ""))
            detail.append(req.build_cmd)
    if req.no_pre_import or not req.guarded:
        return
    if req.dry_run and att.repo is not None and plan.to_rev != facts.head:
        att.reporter.line(f"pre-import skipped in a dry run: {plan.to_rev} is not checked out")
        return
    att.step("pre-import")
    with att.phase("pre-import") as detail:
        _reject_on_failure(att, lambda: _pre_import(att, detail))


def _reject_on_failure(att: _Attempt, check: Callable[[], None]) -> None:
    """Run a check of the new code; when it fails, the tree's target becomes the last good revision.

    A later restart of the old process (by anyone) must not load code that was just proven broken.
    """
    try:
        check()
    except RefusedError:
        target = _last_good_rev(att)
        if att.repo is not None and target is not None:
            att.register(Undo("tree", rev=target, repo=str(att.repo.path), build_cmd=_rebuild(att)))
        raise


def _last_good_rev(att: _Attempt) -> str | None:
    facts = att.facts
    assert facts is not None
    return facts.rollback.rev if facts.rollback is not None else facts.head


def _rebuild(att: _Attempt) -> str | None:
    return att.req.build_cmd if att.plan is not None and att.plan.code_changed else None


def _check_ready_url(att: _Attempt, probe: Callable[[], ProbeResult], detail: _Detail) -> None:
    """Refuse a readiness URL that does not answer while the service runs: the guard and its rollback would fail."""
    from unitctl.probe import parse_target

    req = att.req
    assert att.facts is not None and req.ready_url is not None
    state = att.facts.state
    if not state.is_active:
        detail.append(f"skipped: {req.unit} is {state.active_state}/{state.sub_state}, nothing runs to answer yet")
        return
    where = parse_target(req.ready_url).display()
    deadline = att.edges.clock() + READY_URL_CHECK_SECONDS
    answer = probe()
    # A service under load may drop a connection now and then: retry, but only briefly.
    while answer.status_code is None and att.edges.clock() + READY_URL_CHECK_INTERVAL + answer.elapsed < deadline:
        att.edges.sleep(READY_URL_CHECK_INTERVAL)
        answer = probe()
    if answer.status_code is None:
        reason = (answer.error or "no answer").replace(f" at {where}", "")
        if req.command == "rollback":
            # A release that runs but does not answer is what 'unitctl rollback' is for: not a reason to refuse it.
            detail.append(f"warning: {where} does not answer ({reason}): rolling back from a release that does not")
            return
        raise ReadyUrlError(
            f"{where} does not answer while {req.unit} is active ({reason})",
            hint="check --ready-url: host, port, path or socket (nothing was changed)",
        )
    if 300 <= answer.status_code < 400:
        raise ReadyUrlError(
            f"{where} answers {answer.describe()} while {req.unit} is active; unitctl never follows redirects",
            hint="point --ready-url at the final URL (nothing was changed)",
        )
    if not answer.ok:
        detail.append(
            f"warning: the running release is not ready ({answer.describe()}): "
            "a rollback would return to an unready release"
        )
        return
    detail.append(f"{answer.describe()} from the running release")


def _verify(att: _Attempt) -> Any:
    verifier = att.edges.verifier
    if verifier is None:
        from unitctl.verify import verify_unit

        verifier = verify_unit
    req = att.req
    assert att.facts is not None
    if req.unit_file is not None and req.unit_bytes is None:
        return verifier(req.unit_file, name=req.unit)
    with tempfile.TemporaryDirectory(prefix="unitctl-verify-") as tmp:
        path = Path(tmp) / req.unit
        path.write_bytes(att.facts.candidate)
        return verifier(path, name=req.unit)


def _build(att: _Attempt, build_cmd: str, repo: Path | None = None) -> None:
    cwd = repo or att.req.repo
    assert cwd is not None
    argv = shlex.split(build_cmd)
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=BUILD_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise RefusedError(f"--build-cmd: {argv[0]!r} not found", hint="fix --build-cmd") from None
    except subprocess.TimeoutExpired:
        raise RefusedError(f"--build-cmd {build_cmd!r} did not finish within {BUILD_TIMEOUT:g}s") from None
    if proc.returncode != 0:
        att.record.output = proc.stdout + proc.stderr
        last = _last_line(proc.stderr or proc.stdout)
        raise RefusedError(
            f"--build-cmd {build_cmd!r} exited {proc.returncode}: {last}",
            hint="fix the build; the full output is in the history",
        )


def _pre_import(att: _Attempt, detail: list[str]) -> None:
    from unitctl.preimport import check_spec

    assert att.facts is not None
    spec = check_spec(
        att.facts.candidate.decode("utf-8", "replace"),
        unit=att.req.unit,
        unit_dir=att.req.unit_dir,
        pre_import=att.req.pre_import,
    )
    spec = replace(spec, name_prefix=transient_prefix(att.req.unit))
    detail.append(" ".join(shlex.quote(a) for a in spec.argv)[:200])
    result = att.edges.backend.run_transient(spec)
    if result.returncode != 0:
        att.record.output = result.output
        last = _last_line(result.output) or f"exit status {result.returncode}"
        raise PreImportError(
            f"{att.req.unit}: the new code does not import in the service's environment: {last}",
            hint="fix the release; the service was not restarted and the full output is in 'unitctl history'",
        )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # The exception line of a traceback is the last; Gunicorn may add a shutdown line after it.
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line[:300]
    return lines[-1][:300] if lines else ""


# -- switch and guard ----------------------------------------------------------------------------------


def _switch(att: _Attempt) -> None:
    req, plan, facts = att.req, att.plan, att.facts
    assert plan is not None and facts is not None
    backend = att.edges.backend
    # Once the new release may run, undoing it means the last good code (or where the tree was).
    back_to = facts.rollback.rev if facts.rollback is not None else (facts.head if att.undo.get("tree") else None)
    if att.repo is not None and back_to is not None:
        att.register(Undo("tree", rev=back_to, repo=str(att.repo.path), build_cmd=_rebuild(att)))
    with att.phase("switch") as detail:
        if plan.unit_changed:
            _write_unit(att, facts)
            detail.append(f"wrote {facts.unit_path}")
        if plan.daemon_reload:
            att.step("daemon-reload", Undo("daemon"))
            backend.daemon_reload()
            detail.append("daemon-reload")
        att.step("restart", Undo("service", was_active=facts.state.is_active))
        if plan.action == "reload":
            backend.reload(req.unit)
        else:
            # A unit that hit its start limit (StartLimitBurst=) refuses a start until it is reset.
            with contextlib.suppress(SystemdError):
                backend.reset_failed(req.unit)
            backend.restart(req.unit)
        detail.append(f"{plan.action} ({plan.why})")


def _write_unit(att: _Attempt, facts: Facts) -> None:
    snap = facts.installed
    if snap.data is not None:
        # The previous bytes must outlive this process: a later command may have to put them back.
        history.store_unit(att.req.history_dir, snap.data)
    att.step(
        "unit-write",
        Undo("unit", path=str(snap.path), sha256=snap.sha256, mode=snap.mode, uid=snap.uid, gid=snap.gid),
    )
    try:
        fsutil.atomic_write(snap.path, facts.candidate)
    except OSError as exc:
        # An atomic write that failed left the old file in place: nothing changed, so nothing to undo.
        att.undo.drop("unit")
        raise InputError(
            f"{snap.path}: cannot write the new unit: {exc.strerror}",
            hint="free space in its file system (nothing was changed)",
        ) from exc


def _guard(att: _Attempt, name: str, timeout: float) -> Any:
    from unitctl import guard

    req = att.req
    probe = att.probe
    assert probe is not None
    with att.phase(name) as detail:
        outcome = guard.watch(
            att.edges.backend,
            req.unit,
            probe,
            timeout=timeout,
            interval=req.ready_interval,
            successes_needed=req.successes_needed,
            clock=att.edges.clock,
            sleep=att.edges.sleep,
            on_tick=lambda elapsed, timeout, last: att.reporter.waiting(
                f"waiting for {req.ready_url}", elapsed, timeout, last
            ),
        )
        detail.append(f"{outcome.kind}: {outcome.reason}")
        # A release that is not ready fails the phase without raising out of the transaction.
        detail.failed = not outcome.ready
    return outcome


def _journal(att: _Attempt) -> list[str]:
    backend = att.edges.backend
    try:
        state = backend.state(att.req.unit)
        lines = backend.journal(att.req.unit, invocation_id=state.invocation_id or None, lines=JOURNAL_LINES)
        if not lines:
            lines = backend.journal(att.req.unit, lines=JOURNAL_LINES)
    except SystemdError as exc:
        return [f"(journal unavailable: {exc})"]
    return [history.mask_secrets(line, att.env) for line in lines]


def _keep_unit(att: _Attempt) -> None:
    assert att.facts is not None
    candidate = att.facts.candidate
    att.record.unit_sha256 = fsutil.sha256(candidate)
    try:
        history.store_unit(att.req.history_dir, candidate)
    except (OSError, UnitctlError) as exc:
        att.reporter.line(f"warning: could not keep a copy of the unit for 'unitctl rollback': {exc}")


# -- undo ---------------------------------------------------------------------------------------------------


def _restore_files(att: _Attempt) -> None:
    """Put the working tree where the undo log says (nothing in systemd was touched), signals held off."""
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


def _undo_tree(att: _Attempt, undo: Undo, detail: list[str]) -> None:
    assert undo.repo is not None and undo.rev is not None
    changed = GitRepo(Path(undo.repo)).checkout(undo.rev)
    detail.append(f"checked out {undo.rev[:12]} ({len(changed)} file(s), bytecode purged)")
    if undo.build_cmd:
        # Keep the output of the check that failed, not of the rebuild.
        failed_output, att.record.output = att.record.output, ""
        try:
            _build(att, undo.build_cmd, Path(undo.repo))
        finally:
            att.record.output = failed_output + att.record.output
        detail.append("build re-run")


def _rollback(att: _Attempt, failure: str, outcome: history.Outcome) -> TransactionError:
    """Run the undo log with signals held off; return the error (exit 4 or 5) to raise."""
    with signals.held(att.edges.install_signal_handlers) as noted:
        try:
            healthy, state_text = _run_undo(att)
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
    return _fail(att, error, final)


def _rollback_error(
    att: _Attempt, failure: str, outcome: history.Outcome, healthy: bool, state_text: str
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


def _head_or_unknown(att: _Attempt) -> str:
    try:
        return GitRepo(att.req.repo).head()[:12] if att.req.repo else "-"
    except UnitctlError:
        return "an unknown revision"


def _run_undo(att: _Attempt) -> tuple[bool, str]:
    """Replay the undo log (tree, unit, daemon-reload, service), then check the previous release."""
    req = att.req
    backend = att.edges.backend
    problems: list[str] = []
    removed = False  # a first deploy: the unit is gone again
    with att.phase("rollback") as detail:
        for undo in att.undo.entries():
            if undo.resource == "tree":
                att.announce("rollback-checkout")
                try:
                    _undo_tree(att, undo, detail)
                except UnitctlError as exc:
                    problems.append(f"checkout/build of {(undo.rev or '')[:12]} failed: {exc}")
            elif undo.resource == "unit":
                att.announce("rollback-unit")
                removed = _undo_unit(att, undo, detail)
            elif undo.resource == "daemon":
                att.announce("rollback-daemon-reload")
                with contextlib.suppress(SystemdError):
                    backend.reset_failed(req.unit)
                backend.daemon_reload()
            elif undo.resource == "service":
                att.announce("rollback-restart")
                if removed:
                    continue
                if not undo.was_active:
                    with contextlib.suppress(SystemdError):
                        backend.stop(req.unit)
                    detail.append("left stopped, as it was")
                    continue
                try:
                    with contextlib.suppress(SystemdError):
                        backend.reset_failed(req.unit)
                    backend.restart(req.unit)
                    detail.append("restarted")
                except SystemdError as exc:
                    problems.append(f"restart of the previous release failed: {exc}")
        if att.undo.get("service") is None and not removed:
            # The unit was written but systemd never restarted the service: the old process still runs.
            detail.append("not restarted: the running service was never switched")
    if removed:
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
        state = backend.state(req.unit)
        return state.is_active, f"{req.unit} is {state.active_state}/{state.sub_state} (not guarded)"
    att.announce("rollback-guard")
    outcome = _guard(att, "rollback-guard", att.rollback_timeout or req.ready_timeout)
    if outcome.ready:
        tree = att.undo.get("tree")
        _running_now(att, outcome.last_state, tree.rev if tree is not None else att.record.from_rev)
        return True, f"ready again ({outcome.reason})"
    att.record.journal += ["-- after the rollback --", *_journal(att)]
    return False, f"the previous release is not ready either: {outcome.reason}"


def _undo_unit(att: _Attempt, undo: Undo, detail: list[str]) -> bool:
    """Put the unit file back (or remove it after a first deploy); return True when it was removed."""
    assert undo.path is not None
    path = Path(undo.path)
    if undo.sha256 is None:
        # A first deploy: nothing ran before, so stop it before the unit disappears.
        with contextlib.suppress(SystemdError):
            att.edges.backend.stop(att.req.unit)
        fsutil.remove(path)
        detail.append(f"removed {path}")
        return True
    data = att.kept.get(undo.sha256) or history.load_unit(att.req.history_dir, undo.sha256)
    if data is None:
        raise InputError(f"the previous {path} ({undo.sha256[:12]}) was not kept: cannot put it back")
    fsutil.restore(fsutil.FileSnapshot(path, data, undo.mode, undo.uid, undo.gid))
    detail.append(f"restored {path}")
    return False


def _state_text(att: _Attempt) -> str:
    try:
        s = att.edges.backend.state(att.req.unit)
    except SystemdError:
        return "in an unknown state"
    return f"{s.active_state}/{s.sub_state}"


# -- recovery of a deploy that died ----------------------------------------------------------------------


def recover(unit: str, *, history_dir: Path, edges: Edges, by: str) -> Record | None:
    """Finish a transaction of ``unit`` that died (its lock is held by us now); return what was recorded.

    When it had decided its outcome, that outcome is recorded; otherwise its undo log is run, exactly as
    the dead process would have, and the attempt is recorded as interrupted (exit 4/5, or 3 when it had not
    touched systemd yet).
    """
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
    pid = tx.begin.get("pid")
    reporter.line(f"an earlier {att.req.command} (pid {pid}) died at step {tx.last_step}: finishing its rollback first")
    failure = f"interrupted at step {tx.last_step} (pid {pid} died); rolled back by 'unitctl {by}'"
    att.record.reason = failure
    if att.undo.touched_systemd:
        error = _rollback(att, failure, "interrupted").error
        att.record.exit_code = int(error.exit_code)
        if att.record.outcome == "rollback-failed":
            att.record.journal = att.record.journal or _journal(att)
        message = str(error)
    else:
        _restore_files(att)
        att.record.outcome, att.record.exit_code = "interrupted", int(ExitCode.REFUSED)
        message = f"{unit}: {failure}; nothing in systemd was changed"
    reporter.line(message)
    _record(journal, history_dir, att.record, reporter)
    return att.record


def _attempt_from(tx: Transaction, unit: str, history_dir: Path, edges: Edges, by: str) -> _Attempt:
    b = tx.begin
    repo = Path(b["repo"]) if b.get("repo") else None
    req = ApplyRequest(
        unit=unit,
        guarded=bool(b.get("ready_url")),
        repo=repo,
        ready_url=b.get("ready_url"),
        ready_interval=float(b.get("ready_interval") or 0.5),
        ready_timeout=float(b.get("rollback_timeout") or 60.0),
        build_cmd=b.get("build_cmd"),
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
    att = _Attempt(req=req, edges=edges, record=record, journal=journal, probe=probe, undo=tx.undo_log())
    att.was_active = bool(b.get("was_active", True))
    att.rollback_timeout = req.ready_timeout
    return att
