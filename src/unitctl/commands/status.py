"""``unitctl status``: a unit's state, deployed revision, last outcome and readiness (probed once)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from unitctl import history
from unitctl.commands import edges as real
from unitctl.commands.report import CommandResult, Outcome, current
from unitctl.commands.settings import StatusSettings, default_argv, unit_or_none
from unitctl.deploy import engine, signals
from unitctl.deploy.journal import Journal, history_dirs
from unitctl.deploy.model import Edges
from unitctl.deploy.progress import Reporter
from unitctl.errors import InputError, LockHeldError
from unitctl.history import Record
from unitctl.probe import ProbeResult
from unitctl.systemd.base import SystemdBackend, UnitState


def run(*, settings: StatusSettings, edges: Edges | None = None) -> CommandResult:
    """Read a unit's status; refuse a unit that systemd does not know and unitctl never deployed."""
    current().unit = unit_or_none(settings.name)
    if settings.ready_url:
        from unitctl.probe import parse_target

        parse_target(settings.ready_url)  # a malformed URL is a usage error before systemd is asked anything
    unit = settings.unit
    use = edges or real.real_edges(settings.backend)
    st = status(
        unit,
        backend=use.backend,
        history_dir=settings.history_path,
        ready_url=settings.ready_url,
        probe_factory=use.probe_factory,
    )
    if st.state.load_state == "not-found" and st.last is None and st.in_progress is None:
        # As `systemctl status nosuch` does: a unit systemd does not know and unitctl never deployed is a mistake.
        raise InputError(
            f"{unit}: no such unit (systemd does not know it) and no deploy of it is recorded in "
            f"{settings.history_path}",
            hint="check the name (systemctl list-units --all) or --history-dir",
        )
    lines = st.lines()
    # status reports, it does not judge: 0 whenever it could read the state (see "ready" in --json).
    return CommandResult(
        command="status",
        unit=unit,
        outcome=Outcome.OK,
        message=lines[0],
        result=st.to_json(),
        text="".join(line + "\n" for line in lines),
    )


@dataclass(frozen=True)
class Status:
    """A unit's state now, its deployed revision and last outcome, readiness right now, a deploy in progress."""

    unit: str
    state: UnitState
    deployed_rev: str | None
    deployed_at: str | None
    last: Record | None
    ready_url: str | None
    probe: ProbeResult | None
    in_progress: dict[str, Any] | None = None  # a deploy holding the lock right now (from its journal)

    def to_json(self) -> dict[str, Any]:
        last = self.last
        return {
            "unit": self.unit,
            "state": asdict(self.state),
            "deployed_rev": self.deployed_rev,
            "deployed_at": self.deployed_at,
            "last_outcome": last.outcome if last else None,
            "last_exit_code": last.exit_code if last else None,
            "last_time": last.time if last else None,
            "last_reason": last.reason if last else None,
            "last_interrupted_step": (last.interrupted_step or None) if last else None,
            "last_recovered_by": (last.recovered_by or None) if last else None,
            "in_progress": self.in_progress,
            "ready_url": self.ready_url,
            "ready": self.probe.ok if self.probe else None,
            "probe": self.probe.describe() if self.probe else None,
        }

    def lines(self) -> list[str]:
        s = self.state
        out = [f"{self.unit}: {s.load_state}, {s.active_state}/{s.sub_state}, MainPID {s.main_pid}"]
        if self.in_progress:
            p = self.in_progress
            out.append(f"in progress: {p['command']} (pid {p['pid']}) since {p['since']}, at step {p['step']}")
        out.append(
            f"deployed: {self.deployed_rev[:12] if self.deployed_rev else '-'}"
            + (f" at {self.deployed_at}" if self.deployed_at else "")
        )
        if self.last:
            last = self.last
            out.append(f"last attempt: {last.command} {last.outcome} (exit {last.exit_code}) {last.time}")
            if last.outcome == "interrupted" and last.interrupted_step:
                by = f", finished by 'unitctl {last.recovered_by}'" if last.recovered_by else ""
                out.append(f"  interrupted at step {last.interrupted_step}{by}")
            if last.outcome != "ok" and last.reason:
                out.append(f"  {last.reason}")
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
    reporter: Reporter | None = None,
) -> Status:
    """Finish a deploy that died (if its lock is free), then read the unit's state, history and readiness."""
    in_progress = _finish_or_describe(unit, backend, history_dir, probe_factory, reporter)
    records = history.read(history_dir, unit)
    good = history.last_good(records)
    last = records[-1] if records else None
    url = ready_url or next((r.ready_url for r in reversed(records) if r.ready_url), None)
    state = backend.state(unit)
    answer = probe_factory(url)() if url else None
    return Status(
        unit, state, good.to_rev if good else None, good.time if good else None, last, url, answer, in_progress
    )


def _finish_or_describe(
    unit: str,
    backend: SystemdBackend,
    history_dir: Path,
    probe_factory: Callable[[str], Callable[[], ProbeResult]],
    reporter: Reporter | None,
) -> dict[str, Any] | None:
    """Recover an unfinished transaction when nobody runs it; describe it when its deploy is still running."""
    from unitctl import lock

    found = (Journal(directory, unit).unfinished() for directory in history_dirs(unit, history_dir))
    tx = next((t for t in found if t is not None), None)
    if tx is None:
        return None
    try:
        with signals.caller_independent(True), lock.unit_lock(lock.default_dir(), unit, command=default_argv()):
            edges = Edges(backend=backend, probe_factory=probe_factory, reporter=reporter or Reporter())
            engine.recover(unit, history_dir=history_dir, edges=edges, by="status")
            return None
    except LockHeldError:
        return {
            "tx": tx.tx,
            "pid": tx.begin.get("pid"),
            "command": tx.begin.get("command"),
            "since": tx.begin.get("time"),
            "step": tx.last_step,
        }
