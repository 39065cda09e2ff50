"""One attempt's bookkeeping, shared by its phases: the facts once captured, the undo log, the journal, the record."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from unitctl import history, masking
from unitctl.deploy.journal import Journal
from unitctl.deploy.model import ApplyRequest, ApplyResult, Edges, Facts, Plan
from unitctl.deploy.progress import Reporter
from unitctl.deploy.undo import Resource, Undo, UndoLog
from unitctl.errors import ExitCode, InputError, SystemdError, UnitctlError
from unitctl.gitrepo import GitRepo
from unitctl.history import Phase, Record
from unitctl.probe import ProbeResult
from unitctl.systemd.base import UnitState

JOURNAL_LINES = 40


class TransactionError(Exception):
    """Carry an ApplyResult out of the transaction together with the UnitctlError to exit with."""

    def __init__(self, error: UnitctlError, result: ApplyResult) -> None:
        super().__init__(str(error))
        self.error = error
        self.result = result


class Detail(list[str]):
    """A phase's detail lines, and whether the phase failed without raising."""

    failed: bool = False


def git_findings(repo: GitRepo, detail: list[str], shown: int = 0) -> int:
    """Add what git found or did since note ``shown`` (repairs, files saved aside or discarded); return the count."""
    detail.extend(repo.notes[shown:])
    if repo.saved:
        detail.append(f"untracked files moved aside into the git directory: {', '.join(repo.saved)}")
    if repo.discarded:
        detail.append(f"changes to tracked files overwritten: {', '.join(repo.discarded)}")
    return len(repo.notes)


def now_iso() -> str:
    """Return the current UTC time as ISO 8601 with microseconds."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Attempt:
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
    git_notes_shown: int = 0  # repo.notes already shown in a phase's detail
    env: dict[str, str] = field(default_factory=dict)
    kept: dict[str, bytes] = field(default_factory=dict)  # unit bytes the undo may put back, by sha256
    rollback_timeout: float = 0.0
    was_active: bool = True
    # The unit's PIDs right before the last reload (the guard waits for its workers to leave); empty after a
    # restart; None when they could not be read.
    old_pids: frozenset[int] | None = frozenset()

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

    def unregister(self, resource: Resource) -> None:
        """Forget ``resource``'s undo (its step failed and changed nothing), in the journal and in memory."""
        with contextlib.suppress(OSError):
            self.journal.drop(resource)
        self.undo.drop(resource)

    def announce(self, name: str) -> None:
        """Announce a rollback step; the rollback goes on even when the journal cannot be written."""
        try:
            self.journal.step(name)
        except OSError as exc:
            self.reporter.line(f"warning: could not journal {name} in {self.journal.path}: {exc.strerror}")

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Detail]:
        """Time a phase; the block may append a detail; record it (failed when it raises or sets ``failed``)."""
        detail = Detail()
        t0 = self.edges.clock()
        ok = False
        try:
            yield detail
            ok = not detail.failed
        finally:
            p = Phase(name, round(self.edges.clock() - t0, 3), ok, masking.mask("; ".join(detail), self.env))
            self.record.phases.append(p)
            self.reporter.phase(p)


def conclude(att: Attempt, outcome: history.Outcome, code: ExitCode, message: str) -> ApplyResult:
    """Set the attempt's outcome and exit code; return its result (secrets masked)."""
    att.record.outcome = outcome
    att.record.exit_code = int(code)
    if outcome != "ok":
        att.record.reason = att.record.reason or message
    return ApplyResult(record=att.record, plan=att.plan, message=masking.mask(message, att.env), exit_code=code)


def fail(att: Attempt, error: UnitctlError, outcome: history.Outcome) -> TransactionError:
    """Conclude the attempt with ``error``; return it ready to raise out of the transaction."""
    error.message = masking.mask(error.message, att.env)
    return TransactionError(error, conclude(att, outcome, error.exit_code, str(error)))


def reload_tracked(att: Attempt) -> None:
    """Reload (HUP) the unit, having read its PIDs first: the guard then counts only the new workers' answers."""
    backend, unit = att.edges.backend, att.req.unit
    pids = backend.unit_pids(unit)
    if pids is None:
        att.reporter.line(
            f"warning: cannot read the processes in {unit}'s cgroup: after the reload the guard counts every "
            "answer, the old workers' too"
        )
    att.old_pids = None if pids is None else frozenset(pids)
    backend.reload(unit)


@dataclass(frozen=True)
class Watched:
    """Another unit than the service to guard (the canary): its name, its probe, and the waiting line to show."""

    unit: str
    probe: Callable[[], ProbeResult]
    waiting: str


def guard_phase(att: Attempt, name: str, timeout: float, *, fail_after: int = 0, other: Watched | None = None) -> Any:
    """Guard the service (or ``other``) as phase ``name`` for at most ``timeout`` seconds; return the outcome.

    ``fail_after`` consecutive HTTP non-2xx answers end it early (0: wait out the timeout). Another unit than the
    service (the canary) was started fresh: no process of an older generation can answer for it.
    """
    from unitctl import guard

    req = att.req
    unit = other.unit if other is not None else None
    probe = other.probe if other is not None else att.probe
    waiting = other.waiting if other is not None else None
    assert probe is not None
    with att.phase(name) as detail:
        outcome = guard.watch(
            att.edges.backend,
            unit or req.unit,
            guard.Rules(
                timeout, interval=req.ready_interval, successes_needed=req.successes_needed, fail_after=fail_after
            ),
            guard.Senses(
                probe,
                clock=att.edges.clock,
                sleep=att.edges.sleep,
                on_tick=lambda elapsed, timeout, last: att.reporter.waiting(
                    waiting or f"waiting for {req.ready_url}", elapsed, timeout, last
                ),
            ),
            old_pids=att.old_pids if unit is None else frozenset(),
        )
        detail.append(f"{outcome.kind}: {outcome.reason}")
        detail.append(f"{outcome.probes} probe(s)")
        # A release that is not ready fails the phase without raising out of the transaction.
        detail.failed = not outcome.ready
    return outcome


def journal_excerpt(att: Attempt, unit: str | None = None, state: UnitState | None = None) -> list[str]:
    """Return the journal lines of ``unit``'s (default: the service's) invocation in ``state`` (default: read now).

    Secrets masked; a journal that cannot be read is one line saying so.
    """
    backend = att.edges.backend
    unit = unit or att.req.unit
    try:
        state = state or backend.state(unit)
        lines = backend.journal(unit, invocation_id=state.invocation_id or None, lines=JOURNAL_LINES)
        if not lines:
            lines = backend.journal(unit, lines=JOURNAL_LINES)
    except SystemdError as exc:
        return [f"(journal unavailable: {exc})"]
    return [masking.mask(line, att.env) for line in lines]


def running_now(att: Attempt, state: UnitState | None, rev: str | None) -> None:
    """Record which process runs (verified) and the revision it was started from."""
    if state is not None and state.invocation_id:
        att.record.invocation_id, att.record.running_rev = state.invocation_id, rev
