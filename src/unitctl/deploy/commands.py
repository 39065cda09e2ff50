"""The commands around the engine: apply/rollback requests from flags, status, history, printing results."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

from unitctl import history
from unitctl.config import Kind
from unitctl.deploy import engine, signals
from unitctl.deploy.journal import Journal, history_dirs
from unitctl.deploy.model import (
    DEFAULT_READY_INTERVAL,
    DEFAULT_READY_TIMEOUT,
    DEFAULT_STRATEGY,
    DEFAULT_UNIT_DIR,
    ApplyRequest,
    Edges,
    parse_strategy,
)
from unitctl.deploy.progress import Reporter, safe_write, settle
from unitctl.desired import Desired, DesiredOptions
from unitctl.errors import ExitCode, InputError, LockHeldError, RefusedError, UnitctlError, UsageError
from unitctl.guard import DEFAULT_FAIL_AFTER
from unitctl.history import Record
from unitctl.probe import ProbeResult
from unitctl.systemd.base import SystemdBackend, UnitState

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
    unit_bytes = history.stored_unit(req.history_dir, target.unit_sha256) if target.unit_sha256 else None
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


def dumps(data: Any) -> str:
    """Serialize a result object for --json."""
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def default_argv() -> tuple[str, ...]:
    """Return this command line as the lock and the journal name it (program name without its path)."""
    return tuple(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))


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
    "fail_after": Kind.COUNT,
    "pre_import": Kind.STR,
    "no_pre_import": Kind.BOOL,
    "canary": Kind.BOOL,
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
    """Return the validated unit name, or raise UsageError when none was given."""
    from unitctl.systemd.base import validate_unit_name

    if not value:
        raise UsageError("which unit? pass NAME (or set name in unitctl.toml)", hint="e.g. 'unitctl apply myapp'")
    return validate_unit_name(value)


def request_from_settings(
    s: dict[str, Any],
    *,
    command: str,
    dry_run: bool = False,
    desired: DesiredOptions | None = None,
    edit_template: bool = False,
) -> ApplyRequest:
    """Build an ApplyRequest from merged flag/config settings and the desired-state options (as ``diff`` takes)."""
    from unitctl.desired import resolve

    strategy = parse_strategy(s.get("strategy") or DEFAULT_STRATEGY)
    unit = unit_name(s.get("name"))
    # unit_file may come from unitctl.toml: it takes part in the "one way to say what the unit becomes" check.
    opts = replace(desired or DesiredOptions(), unit_file=s.get("unit_file") or None)
    want = resolve(s.get("name"), opts, cpu_count=os.cpu_count())
    return ApplyRequest(
        unit=unit,
        unit_file=Path(want.unit_file) if want.unit_file else None,
        unit_bytes=want.rendered.encode("utf-8", "surrogateescape") if want.rendered is not None else None,
        socket_bytes=_socket_bytes(want, unit),
        rewrite=want.rewrite,
        guarded=bool(s.get("guarded")) if command == "apply" else True,
        repo=Path(s["repo"]).absolute() if s.get("repo") else None,
        rev=s.get("rev"),
        ready_url=s.get("ready_url"),
        ready_timeout=float(s.get("ready_timeout") or DEFAULT_READY_TIMEOUT),
        ready_interval=float(s.get("ready_interval") or DEFAULT_READY_INTERVAL),
        strategy=strategy,
        fail_after=DEFAULT_FAIL_AFTER if s.get("fail_after") is None else int(s["fail_after"]),
        pre_import=s.get("pre_import"),
        no_pre_import=bool(s.get("no_pre_import")),
        canary=s.get("canary") is not False,
        build_cmd=s.get("build_cmd"),
        dry_run=dry_run,
        edit_template=edit_template,
        history_dir=Path(s.get("history_dir") or history.DEFAULT_DIR),
        unit_dir=DEFAULT_UNIT_DIR,
        command=command,
        argv=default_argv(),
    )


def _socket_bytes(want: Desired, unit: str) -> bytes | None:
    """Return the ``.socket`` to install with the unit: rendered with it, or beside its --unit-file."""
    from unitctl.desired import sibling_socket

    if want.rendered_socket is not None:
        return want.rendered_socket.encode("utf-8")
    if want.unit_file is not None:
        return sibling_socket(Path(want.unit_file), unit)
    return None


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
        result, error = engine.run_result(request, edges)
    except UnitctlError as err:
        report_error(err, unit=request.unit, command=request.command, as_json=as_json, out=out)
        raise
    # The outcome is recorded: printing it is a courtesy to a caller who may be gone, never part of it.
    with contextlib.suppress(OSError, ValueError):
        github.emit(result, error=error)
    if as_json:
        data = result.to_json()
        if error is not None:
            data["error"] = str(error)
        safe_write(out, dumps(data) + "\n")
    elif error is None:
        safe_write(out, result.message + "\n")
    settle()
    if error is not None:
        raise error
    return result.exit_code


def report_error(err: UnitctlError, *, unit: str | None, command: str, as_json: bool, out: IO[str]) -> None:
    """Report an error that ended the command before an attempt had a result: annotation, summary, --json."""
    from unitctl import github

    with contextlib.suppress(OSError, ValueError):
        github.emit_error(err, unit=unit, command=command)  # no-op outside GitHub Actions
    if as_json:
        safe_write(out, dumps({"unit": unit, "command": command, "exit_code": int(err.exit_code),
                               "error": str(err)}) + "\n")  # fmt: skip
    settle()


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
    if st.state.load_state == "not-found" and st.last is None and st.in_progress is None:
        # As `systemctl status nosuch` does: a unit systemd does not know and unitctl never deployed is a mistake.
        raise InputError(
            f"{unit}: no such unit (systemd does not know it) and no deploy of it is recorded in "
            f"{history_dir or history.DEFAULT_DIR}",
            hint="check the name (systemctl list-units --all) or --history-dir",
        )
    if as_json:
        safe_write(sys.stdout, dumps(st.to_json()) + "\n")
    else:
        safe_write(sys.stdout, "".join(line + "\n" for line in st.lines()))
    settle()
    # status reports, it does not judge: 0 whenever it could read the state (see "ready" in --json).
    return int(ExitCode.OK)


def cli_prune(s: dict[str, Any], *, keep: int, dry_run: bool) -> int:
    """Prune a unit's history to its ``keep`` newest records (and the ones rollback needs); return the exit code."""
    from unitctl import lock

    unit = unit_name(s.get("name"))
    directory = Path(s["history_dir"]) if s.get("history_dir") else history.DEFAULT_DIR
    if dry_run:
        result = history.prune(directory, unit, keep, dry_run=True)
    else:
        # The unit's own deploys wait (or we do): its journal and last records are not rewritten under it.
        with lock.unit_lock(lock.default_dir(), unit, command=default_argv()):
            result = history.prune(directory, unit, keep)
    verb = "would remove" if dry_run else "removed"
    for line in history.iter_lines(result.removed):
        sys.stdout.write(f"{verb}: {line}\n")
    for digest in result.units:
        sys.stdout.write(f"{verb}: {directory / 'units' / digest}\n")
    sys.stdout.write(
        f"{unit}: {verb} {len(result.removed)} record(s) and {len(result.units)} stored unit file(s), "
        f"kept {result.kept}\n"
    )
    return int(ExitCode.CHANGES_PENDING if dry_run and result.removed else ExitCode.OK)


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
