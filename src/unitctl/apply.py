"""The deploy transaction: lock → capture → pre-flight → switch → guard → (rollback), recorded in history.

The decisions are pure functions over data (``choose_action``, ``make_plan``); the side effects go
through four edges: the systemd backend, ``gitrepo``, ``fsutil`` and the readiness probe. Every way
out ends in a known state:

- refused before the switch (bad unit, dirty tree, broken import, lock held): exit 3, the service
  untouched; after a failed pre-import the working tree is put back at the last good revision;
- the release failed after the switch: rollback (previous revision, previous unit bytes or no
  unit, reset-failed, daemon-reload, restart, the same readiness check), exit 4 when the previous
  release is verified ready, exit 5 when not;
- Ctrl-C / SIGTERM during the transaction: the same rollback; while it runs SIGINT/SIGTERM are
  blocked (and noted), so a second signal cannot leave a half-restored service.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import IO, Any, Literal, Protocol, cast

from unitctl import fsutil, history
from unitctl.config import Kind
from unitctl.desired import DesiredOptions, RewriteSpec
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
from unitctl.gitrepo import GitRepo, RollbackTarget
from unitctl.history import Phase, Record
from unitctl.probe import ProbeResult
from unitctl.systemd.base import SystemdBackend, UnitState

Strategy = Literal["auto", "restart", "reload"]
Action = Literal["none", "restart", "reload"]
STRATEGIES = ("auto", "restart", "reload")
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_READY_TIMEOUT = 60.0
DEFAULT_READY_INTERVAL = 0.5
BUILD_TIMEOUT = 1800.0
JOURNAL_LINES = 40
# Pre-flight check of the readiness URL: retry a connection failure for at most this long, this often.
READY_URL_CHECK_SECONDS = 3.0
READY_URL_CHECK_INTERVAL = 0.5


class Interrupted(BaseException):
    """SIGTERM (or SIGINT) arrived during a transaction; carries the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def signame(self) -> str:
        return signal.Signals(self.signum).name


# -- inputs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyRequest:
    """Everything a deploy was asked to do (flags merged over unitctl.toml)."""

    unit: str  # validated unit name, e.g. app.service
    unit_file: Path | None = None  # None: keep the installed unit
    unit_bytes: bytes | None = None  # the unit to deploy given as bytes (rollback from history, --render)
    rewrite: RewriteSpec | None = None  # deploy the installed unit rewritten (--workers/--max-workers/--no-preload)
    guarded: bool = True
    repo: Path | None = None
    rev: str | None = None
    ready_url: str | None = None
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    ready_interval: float = DEFAULT_READY_INTERVAL
    strategy: Strategy = "restart"
    pre_import: str | None = None  # MODULE:VAR; None: gunicorn --check-config
    no_pre_import: bool = False
    build_cmd: str | None = None
    dry_run: bool = False
    history_dir: Path = history.DEFAULT_DIR
    unit_dir: Path = DEFAULT_UNIT_DIR
    command: str = "apply"  # apply | rollback
    successes_needed: int = 3
    argv: tuple[str, ...] = ()


class Verifier(Protocol):
    def __call__(self, path: Path, *, name: str | None = None) -> Any: ...  # -> VerifyReport(.errors, .warnings)


@dataclass
class Edges:
    """The side-effect edges a transaction goes through (real ones by default, fakes in unit tests)."""

    backend: SystemdBackend
    probe_factory: Callable[[str], Callable[[], ProbeResult]]
    verifier: Verifier | None = None
    reporter: Reporter | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    install_signal_handlers: bool = True


# -- pure decisions --------------------------------------------------------------------------------


def choose_action(
    strategy: Strategy, *, unit_changed: bool, code_changed: bool, preload: bool, was_active: bool
) -> tuple[Action, str]:
    """Decide how to switch to the new release and say why."""
    if not unit_changed and not code_changed and was_active:
        return "none", "the unit and the code are what is deployed and running"
    if not was_active:
        return "restart", "the service is not running: start it"
    if unit_changed:
        if strategy == "reload":
            return "restart", "the unit changed: a reload would not apply it, restarting"
        return "restart", "the unit changed"
    if strategy == "restart":
        return "restart", "code changed (--strategy restart)"
    if preload:
        if strategy == "reload":
            raise UsageError(
                "--strategy reload cannot load new code: Gunicorn runs with --preload, so a HUP keeps the old app",
                hint="use --strategy restart (or auto), or drop --preload",
            )
        return "restart", "code changed and Gunicorn preloads the app: a HUP would keep the old code"
    return "reload", "only the code changed and Gunicorn does not preload: graceful reload (HUP)"


@dataclass(frozen=True)
class Plan:
    """What a deploy will do, decided from the captured state and the candidate."""

    unit: str
    unit_path: str
    unit_changed: bool
    first_deploy: bool  # no unit file was installed at unit_path
    was_active: bool
    from_rev: str | None  # the revision to return to (last good)
    rollback_source: str | None
    to_rev: str | None  # the revision being deployed
    code_changed: bool
    preload: bool
    action: Action
    why: str
    candidate_sha256: str
    installed_sha256: str | None

    @property
    def changes(self) -> bool:
        return self.action != "none"


def make_plan(
    *,
    unit: str,
    unit_path: Path,
    installed: bytes | None,
    candidate: bytes,
    state: UnitState,
    deployed_rev: str | None,
    rollback: RollbackTarget | None,
    to_rev: str | None,
    preload: bool,
    strategy: Strategy,
) -> Plan:
    """Decide the plan (pure)."""
    unit_changed = installed != candidate
    # Without a recorded deploy the running code is unknown: treat the revision as new.
    code_changed = to_rev is not None and to_rev != deployed_rev
    action, why = choose_action(
        strategy, unit_changed=unit_changed, code_changed=code_changed, preload=preload, was_active=state.is_active
    )
    return Plan(
        unit=unit,
        unit_path=str(unit_path),
        unit_changed=unit_changed,
        first_deploy=installed is None,
        was_active=state.is_active,
        from_rev=rollback.rev if rollback else deployed_rev,
        rollback_source=rollback.source if rollback else None,
        to_rev=to_rev,
        code_changed=code_changed,
        preload=preload,
        action=action,
        why=why,
        candidate_sha256=fsutil.sha256(candidate),
        installed_sha256=fsutil.sha256(installed) if installed is not None else None,
    )


# -- output ----------------------------------------------------------------------------------------


class Reporter:
    """One line per phase with its duration on ``stream``; a live countdown while waiting on a terminal."""

    def __init__(self, stream: IO[str] | None = None, *, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.live = bool(getattr(self.stream, "isatty", lambda: False)()) and not quiet
        self._spinning = False
        self._frame = 0

    def line(self, text: str) -> None:
        if self.quiet:
            return
        self._clear()
        self.stream.write(f"unitctl: {text}\n")
        self.stream.flush()

    def phase(self, p: Phase) -> None:
        mark = "ok" if p.ok else "FAILED"
        detail = f"  {p.detail}" if p.detail else ""
        self.line(f"{p.name:<10} {p.seconds:6.2f}s  {mark}{detail}")

    def waiting(self, what: str, elapsed: float, timeout: float, last: ProbeResult | None) -> None:
        if not self.live:
            return
        frames = "|/-\\"
        self._frame += 1
        answer = last.describe() if last else "no answer yet"
        text = f"\r{frames[self._frame % 4]} {what}: {elapsed:5.1f}s / {timeout:g}s  ({answer})"
        self.stream.write(text[:200] + "\x1b[K")
        self.stream.flush()
        self._spinning = True

    def _clear(self) -> None:
        if self._spinning:
            self.stream.write("\r\x1b[K")
            self._spinning = False


# -- results ---------------------------------------------------------------------------------------


@dataclass
class ApplyResult:
    """How an apply/rollback ended (the error, if any, is raised after the record is written)."""

    record: Record
    plan: Plan | None
    message: str
    exit_code: int

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.record.unit,
            "command": self.record.command,
            "outcome": self.record.outcome,
            "exit_code": self.exit_code,
            "message": self.message,
            "plan": asdict(self.plan) if self.plan else None,
            "record": self.record.to_json(),
        }


class TransactionError(Exception):
    """Carry an ApplyResult out of the transaction together with the UnitctlError to exit with."""

    def __init__(self, error: UnitctlError, result: ApplyResult) -> None:
        super().__init__(str(error))
        self.error = error
        self.result = result


# -- signals ---------------------------------------------------------------------------------------

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _signals_raise(enabled: bool) -> Iterator[None]:
    """Turn SIGTERM into Interrupted (SIGINT stays KeyboardInterrupt) for the block."""
    import threading

    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_deferred(enabled: bool) -> Iterator[list[int]]:
    """Block SIGINT/SIGTERM for the block (children inherit the mask); yield the list of signals that arrived."""
    import threading

    noted: list[int] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(signum)

    previous = {s: signal.signal(s, note) for s in _SIGNALS}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield noted
    finally:
        # Pending signals are delivered to `note` on unblocking, then the old handlers come back.
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for s, h in previous.items():
            signal.signal(s, h)


# -- the transaction -------------------------------------------------------------------------------


@dataclass
class _Tx:
    """Mutable bookkeeping of one attempt."""

    req: ApplyRequest
    edges: Edges
    record: Record
    started: float
    repo: GitRepo | None = None
    snapshot: fsutil.FileSnapshot | None = None
    state_before: UnitState | None = None
    head_before: str | None = None
    rollback: RollbackTarget | None = None
    plan: Plan | None = None
    env: dict[str, str] = field(default_factory=dict)
    tree_moved: bool = False  # the working tree is no longer at head_before
    code_rejected: bool = False  # the new revision failed its build or import check: leave the last good one
    unit_written: bool = False
    switched: bool = False  # systemd was told to (re)start or reload the new release

    @property
    def reporter(self) -> Reporter:
        assert self.edges.reporter is not None
        return self.edges.reporter

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


class _Detail(list[str]):
    """A phase's detail lines, and whether the phase failed without raising."""

    failed: bool = False


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run(req: ApplyRequest, edges: Edges) -> ApplyResult:
    """Run one guarded (or plain) apply under the unit's lock; raise the UnitctlError it ends with."""
    result, error = run_result(req, edges)
    if error is not None:
        raise error
    return result


def run_result(req: ApplyRequest, edges: Edges) -> tuple[ApplyResult, UnitctlError | None]:
    """Run one apply; return its result and the error to exit with (None on success).

    Usage errors are raised (there is no attempt); a refusal because the lock is held is recorded, then raised.
    """
    from unitctl.lock import unit_lock

    if edges.reporter is None:
        edges.reporter = Reporter()
    _validate(req)
    probe = edges.probe_factory(req.ready_url) if req.guarded and req.ready_url else None
    record = Record(time=now_iso(), unit=req.unit, command=req.command, outcome="ok", exit_code=0)
    record.repo = str(req.repo) if req.repo else None
    record.ready_url = req.ready_url
    record.strategy = req.strategy
    held = contextlib.ExitStack()
    try:
        held.enter_context(unit_lock(req.history_dir / "locks", req.unit, command=req.argv or None))
    except LockHeldError as exc:
        record.outcome, record.exit_code, record.reason = "refused", int(exc.exit_code), str(exc)
        if not req.dry_run:
            with contextlib.suppress(OSError, UnitctlError):
                history.append(req.history_dir, record)
        raise
    with held:
        tx = _Tx(req=req, edges=edges, record=record, started=edges.clock())
        error: UnitctlError | None = None
        try:
            with _signals_raise(edges.install_signal_handlers):
                result = _transaction(tx, probe)
        except TransactionError as exc:
            result, error = exc.result, exc.error
        # The outcome is decided: a signal now must not lose its record.
        with _signals_deferred(edges.install_signal_handlers):
            _finish(tx, result)
        return result, error


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


def _finish(tx: _Tx, result: ApplyResult) -> None:
    """Append the attempt to the history (masking secrets); never lose the caller's outcome to a history error."""
    rec = tx.record
    rec.exit_code = result.exit_code
    rec.reason = history.mask_secrets(rec.reason, tx.env)
    rec.journal = [history.mask_secrets(line, tx.env) for line in rec.journal]
    rec.output = history.mask_secrets(rec.output, tx.env)[-20000:]
    if tx.req.dry_run:
        return
    try:
        history.append(tx.req.history_dir, rec)
    except (OSError, UnitctlError) as exc:
        tx.reporter.line(f"warning: could not record this attempt in {tx.req.history_dir}: {exc}")


def _result(tx: _Tx, outcome: history.Outcome, code: ExitCode, message: str) -> ApplyResult:
    tx.record.outcome = outcome
    tx.record.exit_code = int(code)
    if outcome != "ok":
        tx.record.reason = tx.record.reason or message
    return ApplyResult(record=tx.record, plan=tx.plan, message=history.mask_secrets(message, tx.env), exit_code=code)


def _fail(tx: _Tx, error: UnitctlError, outcome: history.Outcome) -> TransactionError:
    error.message = history.mask_secrets(error.message, tx.env)
    return TransactionError(error, _result(tx, outcome, error.exit_code, str(error)))


def _transaction(tx: _Tx, probe: Callable[[], ProbeResult] | None) -> ApplyResult:
    try:
        candidate = _capture(tx)
        assert tx.plan is not None
        if not tx.plan.changes:
            return _finish_without_switch(tx)
        _preflight(tx, candidate, probe)
        if tx.req.dry_run:
            return _finish_without_switch(tx)
        _switch(tx, candidate)
        if not tx.req.guarded:
            return _result(tx, "ok", ExitCode.OK, f"{tx.req.unit}: applied ({tx.plan.action}), not guarded")
        assert probe is not None
        outcome = _guard(tx, probe, "guard")
        if outcome.ready:
            _keep_unit(tx, candidate)
            rev = f" at {tx.plan.to_rev[:12]}" if tx.plan.to_rev else ""
            return _result(tx, "ok", ExitCode.OK, f"{tx.req.unit}: deployed{rev} and ready ({outcome.reason})")
        failure = f"the new release failed: {outcome.reason}"
        tx.record.reason = failure
        tx.record.journal = _journal(tx)
        raise _rollback(tx, probe, failure, "rolled-back")
    except TransactionError:
        raise
    except (KeyboardInterrupt, Interrupted) as exc:
        signame = exc.signame if isinstance(exc, Interrupted) else "SIGINT"
        raise _on_interrupt(tx, probe, signame) from None
    except RefusedError as exc:
        if tx.switched or tx.unit_written:
            raise _rollback(tx, probe, str(exc), "rolled-back") from None
        _put_tree_back(tx, to_last_good=tx.code_rejected)
        raise _fail(tx, exc, "refused") from None
    except UnitctlError as exc:
        if tx.switched or tx.unit_written:
            tx.record.journal = _journal(tx)
            raise _rollback(tx, probe, f"the switch failed: {exc}", "rolled-back") from None
        _put_tree_back(tx, to_last_good=False)
        raise _fail(tx, exc, "refused") from None
    except Exception as exc:
        # A bug or an unexpected OS error: still end in a known state.
        if tx.switched or tx.unit_written:
            raise _rollback(tx, probe, f"unexpected error: {type(exc).__name__}: {exc}", "rolled-back") from exc
        _put_tree_back(tx, to_last_good=False)
        raise _fail(tx, RefusedError(f"{tx.req.unit}: unexpected error before the switch: {exc}"), "refused") from exc


def _on_interrupt(tx: _Tx, probe: Callable[[], ProbeResult] | None, signame: str) -> TransactionError:
    tx.record.reason = f"interrupted by {signame}"
    if tx.switched or tx.unit_written:
        return _rollback(tx, probe, f"interrupted by {signame} during the deploy", "interrupted")
    with _signals_deferred(tx.edges.install_signal_handlers):
        _put_tree_back(tx, to_last_good=False)
    return _fail(
        tx,
        RefusedError(f"{tx.req.unit}: interrupted by {signame} before the switch; nothing was changed"),
        "interrupted",
    )


def _finish_without_switch(tx: _Tx) -> ApplyResult:
    plan = tx.plan
    assert plan is not None
    summary = _plan_summary(plan)
    if tx.req.dry_run:
        _put_tree_back(tx, to_last_good=False)
        if plan.changes:
            return _result(tx, "would-change", ExitCode.CHANGES_PENDING, f"{tx.req.unit}: dry run: would {summary}")
        return _result(tx, "nothing-to-do", ExitCode.OK, f"{tx.req.unit}: dry run: nothing to do ({plan.why})")
    return _result(tx, "nothing-to-do", ExitCode.OK, f"{tx.req.unit}: nothing to do ({plan.why})")


def _plan_summary(plan: Plan) -> str:
    parts = []
    if plan.unit_changed:
        parts.append(f"{'install' if plan.first_deploy else 'replace'} {plan.unit_path}")
    if plan.code_changed and plan.to_rev:
        parts.append(f"deploy revision {plan.to_rev[:12]}")
    parts.append(f"{plan.action} {plan.unit} ({plan.why})")
    return ", ".join(parts)


# -- phases ----------------------------------------------------------------------------------------


def _capture(tx: _Tx) -> bytes:
    req = tx.req
    with tx.phase("capture") as detail:
        unit_path = req.unit_dir / req.unit
        tx.snapshot = fsutil.snapshot(unit_path)
        tx.state_before = tx.edges.backend.state(req.unit)
        candidate = _candidate(tx, detail)
        records = history.read(req.history_dir, req.unit)
        last = history.last_good(records)
        deployed_rev = last.to_rev if last else None
        to_rev: str | None = None
        if req.repo is not None:
            tx.repo = GitRepo(req.repo)
            tx.repo.check_repo()
            tx.repo.check_clean()
            tx.head_before = tx.repo.head()
            recorded = last.to_rev if last and last.repo == str(req.repo) else None
            tx.rollback = tx.repo.rollback_target(recorded)
            if tx.rollback is None and tx.snapshot.data is not None:
                shallow = tx.repo.is_shallow()
                raise GitStateError(
                    f"{req.repo}: no revision to roll back to (no deploy recorded, no ORIG_HEAD, reflog or parent"
                    f"{'; the clone is shallow' if shallow else ''})",
                    hint="fetch more history (git fetch --unshallow)"
                    if shallow
                    else "deploy from a repository with at least two commits, or record a first deploy",
                )
            if req.rev is not None:
                target = tx.repo.resolve(req.rev)
                if target is None:
                    raise GitStateError(f"{req.repo} has no revision {req.rev!r}", hint="fetch it or fix --rev")
                to_rev = target
            else:
                to_rev = tx.head_before
            detail.append(f"HEAD {tx.head_before[:12]}")
            if tx.rollback is not None:
                detail.append(f"rollback target {tx.rollback.rev[:12]} (from {tx.rollback.source})")
                tx.record.rollback_source = tx.rollback.source
            else:
                # Nothing ran before: a failed first deploy is undone by removing the unit.
                detail.append("first deploy: no earlier revision to roll back to")
        tx.record.from_rev = tx.rollback.rev if tx.rollback else deployed_rev
        tx.record.to_rev = to_rev
        tx.record.unit_sha256 = tx.snapshot.sha256
        tx.record.candidate_sha256 = fsutil.sha256(candidate)
        view = _service_view(candidate, req.unit, req.unit_dir)
        tx.env = dict(view.env)
        tx.plan = make_plan(
            unit=req.unit,
            unit_path=unit_path,
            installed=tx.snapshot.data,
            candidate=candidate,
            state=tx.state_before,
            deployed_rev=deployed_rev,
            rollback=tx.rollback,
            to_rev=to_rev,
            preload=view.preload,
            strategy=req.strategy,
        )
        detail.append(
            f"unit {'absent' if tx.snapshot.data is None else 'installed'}, "
            f"{tx.state_before.active_state}/{tx.state_before.sub_state} (backend {tx.edges.backend.name})"
        )
    return candidate


def _candidate(tx: _Tx, detail: _Detail) -> bytes:
    req = tx.req
    if req.unit_bytes is not None:
        return req.unit_bytes
    if req.unit_file is not None:
        return fsutil.read_unit_bytes(req.unit_file, hint="check --unit-file")
    data, path = _installed_unit(tx)
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


def _installed_unit(tx: _Tx) -> tuple[bytes, str]:
    """Return the installed unit's bytes and path (the unit kept, or the one a rewrite starts from)."""
    req = tx.req
    assert tx.snapshot is not None
    if tx.snapshot.data is not None:
        return tx.snapshot.data, str(tx.snapshot.path)
    fragment = tx.state_before.fragment_path if tx.state_before else ""
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


@dataclass(frozen=True)
class _View:
    env: dict[str, str]
    preload: bool


def _service_view(candidate: bytes, unit: str, unit_dir: Path) -> _View:
    from unitctl.preimport import service_view

    view = service_view(candidate.decode("utf-8", "replace"), unit=unit, unit_dir=unit_dir)
    return _View(env=dict(view.env), preload=view.preload)


def _preflight(tx: _Tx, candidate: bytes, probe: Callable[[], ProbeResult] | None) -> None:
    req = tx.req
    plan = tx.plan
    assert plan is not None
    if probe is not None:
        with tx.phase("ready-url") as detail:
            _check_ready_url(tx, probe, detail)
    with tx.phase("verify") as detail:
        report = _verify(tx, candidate)
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
    if tx.repo is not None and plan.to_rev and tx.head_before != plan.to_rev and not req.dry_run:
        with tx.phase("checkout") as detail:
            tx.tree_moved = True
            changed = tx.repo.checkout(plan.to_rev)
            detail.append(f"{plan.to_rev[:12]} ({len(changed)} file(s) changed, bytecode purged)")
    if req.build_cmd and not req.dry_run and plan.code_changed:
        with tx.phase("build") as detail:
            tx.code_rejected = True
            _build(tx, req.build_cmd)
            tx.code_rejected = False
            detail.append(req.build_cmd)
    if req.no_pre_import or not req.guarded:
        return
    if req.dry_run and tx.repo is not None and plan.to_rev != tx.head_before:
        tx.reporter.line(f"pre-import skipped in a dry run: {plan.to_rev} is not checked out")
        return
    with tx.phase("pre-import") as detail:
        _pre_import(tx, candidate, detail)


def _check_ready_url(tx: _Tx, probe: Callable[[], ProbeResult], detail: _Detail) -> None:
    """Refuse a readiness URL that does not answer while the service runs: the guard and its rollback would fail."""
    from unitctl.probe import parse_target

    req = tx.req
    state = tx.state_before
    assert state is not None and req.ready_url is not None
    if not state.is_active:
        detail.append(f"skipped: {req.unit} is {state.active_state}/{state.sub_state}, nothing runs to answer yet")
        return
    where = parse_target(req.ready_url).display()
    deadline = tx.edges.clock() + READY_URL_CHECK_SECONDS
    answer = probe()
    # A service under load may drop a connection now and then: retry, but only briefly.
    while answer.status_code is None and tx.edges.clock() + READY_URL_CHECK_INTERVAL + answer.elapsed < deadline:
        tx.edges.sleep(READY_URL_CHECK_INTERVAL)
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


def _verify(tx: _Tx, candidate: bytes) -> Any:
    verifier = tx.edges.verifier
    if verifier is None:
        from unitctl.verify import verify_unit

        verifier = verify_unit
    req = tx.req
    if req.unit_file is not None and req.unit_bytes is None:
        return verifier(req.unit_file, name=req.unit)
    with tempfile.TemporaryDirectory(prefix="unitctl-verify-") as tmp:
        path = Path(tmp) / req.unit
        path.write_bytes(candidate)
        return verifier(path, name=req.unit)


def _build(tx: _Tx, build_cmd: str) -> None:
    assert tx.req.repo is not None
    argv = shlex.split(build_cmd)
    try:
        proc = subprocess.run(
            argv,
            cwd=tx.req.repo,
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
        tx.record.output = proc.stdout + proc.stderr
        last = _last_line(proc.stderr or proc.stdout)
        raise RefusedError(
            f"--build-cmd {build_cmd!r} exited {proc.returncode}: {last}",
            hint="fix the build; the full output is in the history",
        )


def _pre_import(tx: _Tx, candidate: bytes, detail: list[str]) -> None:
    from unitctl.preimport import check_spec

    spec = check_spec(
        candidate.decode("utf-8", "replace"),
        unit=tx.req.unit,
        unit_dir=tx.req.unit_dir,
        pre_import=tx.req.pre_import,
    )
    detail.append(" ".join(shlex.quote(a) for a in spec.argv)[:200])
    result = tx.edges.backend.run_transient(spec)
    if result.returncode != 0:
        tx.code_rejected = True
        tx.record.output = result.output
        last = _last_line(result.output) or f"exit status {result.returncode}"
        raise PreImportError(
            f"{tx.req.unit}: the new code does not import in the service's environment: {last}",
            hint="fix the release; the service was not restarted and the full output is in 'unitctl history'",
        )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # The exception line of a traceback is the last; Gunicorn may add a shutdown line after it.
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line[:300]
    return lines[-1][:300] if lines else ""


def _switch(tx: _Tx, candidate: bytes) -> None:
    req = tx.req
    plan = tx.plan
    assert plan is not None and tx.snapshot is not None
    backend = tx.edges.backend
    with tx.phase("switch") as detail:
        if plan.unit_changed:
            tx.unit_written = True
            fsutil.atomic_write(tx.snapshot.path, candidate)
            backend.daemon_reload()
            detail.append(f"wrote {tx.snapshot.path}, daemon-reload")
        tx.switched = True
        if plan.action == "reload":
            backend.reload(req.unit)
        else:
            backend.restart(req.unit)
        detail.append(f"{plan.action} ({plan.why})")


def _guard(tx: _Tx, probe: Callable[[], ProbeResult], name: str) -> Any:
    from unitctl import guard

    req = tx.req
    with tx.phase(name) as detail:
        outcome = guard.watch(
            tx.edges.backend,
            req.unit,
            probe,
            timeout=req.ready_timeout,
            interval=req.ready_interval,
            successes_needed=req.successes_needed,
            clock=tx.edges.clock,
            sleep=tx.edges.sleep,
            on_tick=lambda elapsed, timeout, last: tx.reporter.waiting(
                f"waiting for {req.ready_url}", elapsed, timeout, last
            ),
        )
        detail.append(f"{outcome.kind}: {outcome.reason}")
        # A release that is not ready fails the phase without raising out of the transaction.
        detail.failed = not outcome.ready
    return outcome


def _journal(tx: _Tx) -> list[str]:
    try:
        state = tx.edges.backend.state(tx.req.unit)
        lines = tx.edges.backend.journal(tx.req.unit, invocation_id=state.invocation_id or None, lines=JOURNAL_LINES)
        if not lines:
            lines = tx.edges.backend.journal(tx.req.unit, lines=JOURNAL_LINES)
    except SystemdError as exc:
        return [f"(journal unavailable: {exc})"]
    return [history.mask_secrets(line, tx.env) for line in lines]


def _keep_unit(tx: _Tx, candidate: bytes) -> None:
    tx.record.unit_sha256 = fsutil.sha256(candidate)
    try:
        history.store_unit(tx.req.history_dir, candidate)
    except (OSError, UnitctlError) as exc:
        tx.reporter.line(f"warning: could not keep a copy of the unit for 'unitctl rollback': {exc}")


def _put_tree_back(tx: _Tx, *, to_last_good: bool) -> None:
    """Return the working tree to where it was (or to the last good revision after a failed pre-import)."""
    if tx.repo is None:
        return
    target = tx.rollback.rev if (to_last_good and tx.rollback) else tx.head_before
    if target is None:
        return
    # A restore step: a signal now must not leave the tree half-way.
    with _signals_deferred(tx.edges.install_signal_handlers):
        _checkout_back(tx, target, to_last_good=to_last_good)


def _checkout_back(tx: _Tx, target: str, *, to_last_good: bool) -> None:
    assert tx.repo is not None
    try:
        if tx.repo.head() == target and not tx.tree_moved:
            return
        with tx.phase("restore-tree") as detail:
            tx.repo.checkout(target)
            detail.append(f"{target[:12]} checked out, bytecode purged")
            if to_last_good and tx.req.build_cmd and tx.plan is not None and tx.plan.code_changed:
                tx.record.output, failed_output = "", tx.record.output
                try:
                    _build(tx, tx.req.build_cmd)
                finally:
                    # Keep the output of the check that failed, not of the rebuild.
                    tx.record.output = failed_output + tx.record.output
                detail.append("build re-run")
    except UnitctlError as exc:
        tx.reporter.line(f"warning: could not put {tx.repo.path} back at {target[:12]}: {exc}")


def _rollback(
    tx: _Tx, probe: Callable[[], ProbeResult] | None, failure: str, outcome: history.Outcome
) -> TransactionError:
    """Return to the captured state with signals held off; return the error (exit 4 or 5) to raise."""
    with _signals_deferred(tx.edges.install_signal_handlers) as noted:
        try:
            healthy, state_text = _do_rollback(tx, probe)
        except (UnitctlError, OSError) as exc:
            healthy, state_text = False, f"the rollback itself failed: {exc}"
    # Signals held off during the rollback are delivered (to a handler that only notes them) on unblocking.
    if noted:
        names = ", ".join(signal.Signals(s).name for s in noted)
        tx.reporter.line(f"{names} received during the rollback: ignored until it finished")
    unit = tx.req.unit
    rev = tx.rollback.rev[:12] if tx.rollback else None
    checked_out = f"; {tx.req.repo} is at {_head_or_unknown(tx)}" if tx.repo else ""
    journal = f"; see 'journalctl -u {unit}' and 'unitctl history {unit.removesuffix('.service')}'"
    if healthy:
        prev = f"previous release {rev}" if rev else "previous release"
        err: UnitctlError = RolledBackError(f"{unit}: {failure}; rolled back to the {prev}: {state_text}{journal}")
        final: history.Outcome = outcome
    else:
        err = RollbackFailedError(
            f"{unit}: {failure}; ROLLBACK FAILED: {state_text}{checked_out}{journal}",
            hint="a human is needed: fix the service by hand, then run 'unitctl status'",
        )
        final = "rollback-failed"
    if tx.snapshot is not None:
        current = fsutil.snapshot(tx.snapshot.path)
        tx.record.unit_sha256 = current.sha256
    return _fail(tx, err, final)


def _head_or_unknown(tx: _Tx) -> str:
    try:
        return tx.repo.head()[:12] if tx.repo else "-"
    except UnitctlError:
        return "an unknown revision"


def _do_rollback(tx: _Tx, probe: Callable[[], ProbeResult] | None) -> tuple[bool, str]:
    """Put back the previous revision and unit, restart and check; return (healthy, what state it is in)."""
    req = tx.req
    backend = tx.edges.backend
    assert tx.snapshot is not None and tx.state_before is not None
    problems: list[str] = []
    with tx.phase("rollback") as detail:
        # Without a recorded good revision (a first deploy) the tree goes back to where it was.
        back_to = tx.rollback.rev if tx.rollback is not None else (tx.head_before if tx.tree_moved else None)
        if tx.repo is not None and back_to is not None:
            try:
                changed = tx.repo.checkout(back_to)
                detail.append(f"checked out {back_to[:12]} ({len(changed)} file(s), bytecode purged)")
                if req.build_cmd and tx.plan is not None and tx.plan.code_changed:
                    _build(tx, req.build_cmd)
                    detail.append("build re-run")
            except UnitctlError as exc:
                problems.append(f"checkout/build of {back_to[:12]} failed: {exc}")
        if tx.unit_written:
            if tx.snapshot.data is None:
                # A first deploy: nothing ran before, so stop it before the unit disappears.
                with contextlib.suppress(SystemdError):
                    backend.stop(req.unit)
            fsutil.restore(tx.snapshot)
            detail.append(f"{'removed' if tx.snapshot.data is None else 'restored'} {tx.snapshot.path}")
        with contextlib.suppress(SystemdError):
            backend.reset_failed(req.unit)
        if tx.unit_written:
            backend.daemon_reload()
        if tx.snapshot.data is None and tx.unit_written:
            detail.append("first deploy: no unit left")
            if problems:
                return False, "; ".join(problems)
            return True, f"the first deploy was undone: {req.unit} is not installed"
        if not tx.state_before.is_active:
            with contextlib.suppress(SystemdError):
                backend.stop(req.unit)
            detail.append("left stopped, as it was")
            if problems:
                return False, "; ".join(problems)
            return True, f"{req.unit} is stopped, as it was before the deploy"
        if not tx.switched:
            # The unit was written but systemd never restarted the service: the old process still runs.
            detail.append("not restarted: the running service was never switched")
        else:
            try:
                backend.restart(req.unit)
                detail.append("restarted")
            except SystemdError as exc:
                problems.append(f"restart of the previous release failed: {exc}")
    if problems:
        return False, "; ".join(problems) + f"; {req.unit} is {_state_text(tx)}"
    if probe is None:
        state = backend.state(req.unit)
        return state.is_active, f"{req.unit} is {state.active_state}/{state.sub_state} (not guarded)"
    outcome = _guard(tx, probe, "rollback-guard")
    if outcome.ready:
        return True, f"ready again ({outcome.reason})"
    tx.record.journal += ["-- after the rollback --", *_journal(tx)]
    return False, f"the previous release is not ready either: {outcome.reason}"


def _state_text(tx: _Tx) -> str:
    try:
        s = tx.edges.backend.state(tx.req.unit)
    except SystemdError:
        return "in an unknown state"
    return f"{s.active_state}/{s.sub_state}"


# -- rollback command, status ----------------------------------------------------------------------


def rollback_request(req: ApplyRequest) -> ApplyRequest:
    """Turn ``unitctl rollback`` into an apply of the previous good deploy recorded in history."""
    records = history.read(req.history_dir, req.unit)
    target = history.previous_good(records)
    if target is None:
        raise RefusedError(
            f"{req.unit}: no earlier good deploy is recorded in {req.history_dir} to roll back to",
            hint="see 'unitctl history'",
        )
    unit_bytes = history.load_unit(req.history_dir, target.unit_sha256) if target.unit_sha256 else None
    if unit_bytes is None:
        raise InputError(
            f"{req.unit}: the unit file of the deploy of {target.time} was not kept in {req.history_dir}/units",
            hint="deploy it with 'unitctl apply --unit-file FILE --rev REV'",
        )
    repo = req.repo or (Path(target.repo) if target.repo else None)
    return replace(
        req,
        command="rollback",
        unit_bytes=unit_bytes,
        unit_file=None,
        repo=repo,
        rev=target.to_rev if repo else None,
        ready_url=req.ready_url or target.ready_url,
        strategy="restart",
    )


@dataclass(frozen=True)
class Status:
    """A unit's state now, its deployed revision and last outcome, readiness right now."""

    unit: str
    state: UnitState
    deployed_rev: str | None
    deployed_at: str | None
    last: Record | None
    ready_url: str | None
    probe: ProbeResult | None

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "state": asdict(self.state),
            "deployed_rev": self.deployed_rev,
            "deployed_at": self.deployed_at,
            "last_outcome": self.last.outcome if self.last else None,
            "last_time": self.last.time if self.last else None,
            "last_reason": self.last.reason if self.last else None,
            "ready_url": self.ready_url,
            "ready": self.probe.ok if self.probe else None,
            "probe": self.probe.describe() if self.probe else None,
        }

    def lines(self) -> list[str]:
        s = self.state
        out = [f"{self.unit}: {s.load_state}, {s.active_state}/{s.sub_state}, MainPID {s.main_pid}"]
        out.append(
            f"deployed: {self.deployed_rev[:12] if self.deployed_rev else '-'}"
            + (f" at {self.deployed_at}" if self.deployed_at else "")
        )
        if self.last:
            last = self.last
            out.append(f"last attempt: {last.command} {last.outcome} (exit {last.exit_code}) {last.time}")
            if self.last.outcome != "ok" and self.last.reason:
                out.append(f"  {self.last.reason}")
        if self.probe is not None:
            out.append(f"ready: {'yes' if self.probe.ok else 'no'} ({self.ready_url}: {self.probe.describe()})")
        else:
            out.append("ready: unknown (no readiness URL: pass --ready-url)")
        return out


def status(
    unit: str,
    *,
    backend: SystemdBackend,
    history_dir: Path,
    ready_url: str | None,
    probe_factory: Callable[[str], Callable[[], ProbeResult]],
) -> Status:
    """Read the unit's state, its history and (if a URL is known) probe it once."""
    records = history.read(history_dir, unit)
    good = history.last_good(records)
    last = records[-1] if records else None
    url = ready_url or next((r.ready_url for r in reversed(records) if r.ready_url), None)
    state = backend.state(unit)
    answer = probe_factory(url)() if url else None
    return Status(unit, state, good.to_rev if good else None, good.time if good else None, last, url, answer)


def dumps(data: Any) -> str:
    """Serialize a result object for --json."""
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def default_argv() -> tuple[str, ...]:
    return tuple(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))


__all__: Sequence[str] = [
    "ApplyRequest",
    "ApplyResult",
    "Edges",
    "Plan",
    "Reporter",
    "choose_action",
    "make_plan",
    "rollback_request",
    "run",
    "status",
]


# -- command-line entry points (called by cli.py) ----------------------------------------------------

APPLY_SCHEMA: dict[str, Kind] = {
    "name": Kind.STR,
    "unit_file": Kind.PATH,
    "guarded": Kind.BOOL,
    "repo": Kind.PATH,
    "rev": Kind.STR,
    "ready_url": Kind.STR,
    "ready_timeout": Kind.NUMBER,
    "ready_interval": Kind.NUMBER,
    "strategy": Kind.STR,
    "pre_import": Kind.STR,
    "no_pre_import": Kind.BOOL,
    "build_cmd": Kind.STR,
    "history_dir": Kind.PATH,
    "backend": Kind.STR,
}
ROLLBACK_SCHEMA: dict[str, Kind] = {
    k: APPLY_SCHEMA[k]
    for k in ("name", "repo", "ready_url", "ready_timeout", "ready_interval", "build_cmd", "history_dir", "backend")
}
STATUS_SCHEMA: dict[str, Kind] = {k: APPLY_SCHEMA[k] for k in ("name", "ready_url", "history_dir", "backend")}


def settings(table: str, schema: dict[str, Kind], flags: dict[str, Any]) -> dict[str, Any]:
    """Merge the flags over ``[table]`` of ./unitctl.toml (flags win)."""
    from unitctl import config

    cfg = config.load()
    values = cfg.section(table, schema) if cfg is not None else {}
    return config.merge(flags, values)


def unit_name(value: str | None) -> str:
    from unitctl.systemd.base import validate_unit_name

    if not value:
        raise UsageError("which unit? pass NAME (or set name in unitctl.toml)", hint="e.g. 'unitctl apply myapp'")
    return validate_unit_name(value)


def request_from_settings(
    s: dict[str, Any], *, command: str, dry_run: bool = False, desired: DesiredOptions | None = None
) -> ApplyRequest:
    """Build an ApplyRequest from merged flag/config settings and the desired-state options (as ``diff`` takes)."""
    from unitctl.desired import resolve

    strategy = s.get("strategy") or "restart"
    if strategy not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    unit = unit_name(s.get("name"))
    # unit_file may come from unitctl.toml: it takes part in the "one way to say what the unit becomes" check.
    opts = replace(desired or DesiredOptions(), unit_file=s.get("unit_file") or None)
    want = resolve(s.get("name"), opts, cpu_count=os.cpu_count())
    if want.rendered_socket is not None:
        raise UsageError(
            f"--render makes {want.rendered_socket} too (socket activation); apply installs only {unit}",
            hint="install the socket with 'unitctl render -o' first, or set socket = false in [render]",
        )
    return ApplyRequest(
        unit=unit,
        unit_file=Path(want.unit_file) if want.unit_file else None,
        unit_bytes=want.rendered.encode("utf-8", "surrogateescape") if want.rendered is not None else None,
        rewrite=want.rewrite,
        guarded=bool(s.get("guarded")) if command == "apply" else True,
        repo=Path(s["repo"]).absolute() if s.get("repo") else None,
        rev=s.get("rev"),
        ready_url=s.get("ready_url"),
        ready_timeout=float(s.get("ready_timeout") or DEFAULT_READY_TIMEOUT),
        ready_interval=float(s.get("ready_interval") or DEFAULT_READY_INTERVAL),
        strategy=cast(Strategy, strategy),
        pre_import=s.get("pre_import"),
        no_pre_import=bool(s.get("no_pre_import")),
        build_cmd=s.get("build_cmd"),
        dry_run=dry_run,
        history_dir=Path(s.get("history_dir") or history.DEFAULT_DIR),
        unit_dir=DEFAULT_UNIT_DIR,
        command=command,
        argv=default_argv(),
    )


def real_edges(backend_name: str | None) -> Edges:
    """Return the real edges: a systemd backend, httpx probes, systemd-analyze verify."""
    from unitctl.probe import Probe
    from unitctl.systemd import get_backend

    def probe_factory(url: str) -> Callable[[], ProbeResult]:
        return Probe(url).check

    return Edges(backend=get_backend(backend_name or "auto"), probe_factory=probe_factory)


def cli_run(request: ApplyRequest, edges: Edges, *, as_json: bool, out: IO[str]) -> int:
    """Run the request, print the result (a line, or one JSON object); return the exit code or raise."""
    if request.command == "rollback":
        request = rollback_request(request)
    from unitctl import github

    try:
        result, error = run_result(request, edges)
    except UnitctlError as err:
        github.emit_error(err, unit=request.unit, command=request.command)  # no-op outside GitHub Actions
        if as_json:
            out.write(dumps({"unit": request.unit, "command": request.command, "exit_code": int(err.exit_code),
                             "error": str(err)}) + "\n")  # fmt: skip
        raise
    github.emit(result, error=error)
    if as_json:
        data = result.to_json()
        if error is not None:
            data["error"] = str(error)
        out.write(dumps(data) + "\n")
    elif error is None:
        out.write(result.message + "\n")
    if error is not None:
        raise error
    return result.exit_code


def cli_status(s: dict[str, Any], *, history_dir: Path | None, as_json: bool) -> int:
    """Print the status of a unit; return 0 (errors reading it raise)."""
    from unitctl.probe import Probe
    from unitctl.systemd import get_backend

    unit = unit_name(s.get("name"))

    def probe_factory(url: str) -> Callable[[], ProbeResult]:
        return Probe(url).check

    st = status(
        unit,
        backend=get_backend(s.get("backend") or "auto"),
        history_dir=history_dir or history.DEFAULT_DIR,
        ready_url=s.get("ready_url"),
        probe_factory=probe_factory,
    )
    if as_json:
        sys.stdout.write(dumps(st.to_json()) + "\n")
    else:
        for line in st.lines():
            sys.stdout.write(line + "\n")
    # status reports, it does not judge: 0 whenever it could read the state (see "ready" in --json).
    return int(ExitCode.OK)


def cli_history(s: dict[str, Any], *, as_json: bool, limit: int) -> None:
    """Print the recorded attempts of a unit."""
    unit = unit_name(s.get("name"))
    directory = Path(s["history_dir"]) if s.get("history_dir") else history.DEFAULT_DIR
    records = history.read(directory, unit)
    if limit > 0:
        records = records[-limit:]
    if as_json:
        sys.stdout.write(dumps([r.to_json() for r in records]) + "\n")
        return
    if not records:
        sys.stdout.write(f"{unit}: no deploys recorded in {directory}\n")
        return
    for line in history.iter_lines(records):
        sys.stdout.write(line + "\n")
