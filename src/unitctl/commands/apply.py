"""``unitctl apply`` and ``unitctl rollback``: a request from the settings, one engine run, its result."""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, replace
from pathlib import Path

from unitctl import history
from unitctl.commands import edges as real
from unitctl.commands.report import CommandResult, Outcome, current
from unitctl.commands.settings import ApplySettings, RollbackSettings, default_argv, unit_or_none
from unitctl.deploy.model import (
    DEFAULT_HOOK_TIMEOUT,
    DEFAULT_READY_INTERVAL,
    DEFAULT_READY_TIMEOUT,
    DEFAULT_STRATEGY,
    DEFAULT_UNIT_DIR,
    ApplyRequest,
    ApplyResult,
    Edges,
    parse_strategy,
)
from unitctl.desired import Desired, DesiredOptions
from unitctl.errors import InputError, RefusedError, UnitctlError
from unitctl.guard import DEFAULT_FAIL_AFTER

# What the engine's recorded outcome is, in the envelope's vocabulary (errors map by their exit code).
_OUTCOMES = {"ok": Outcome.DEPLOYED, "nothing-to-do": Outcome.NOTHING_TO_DO, "would-change": Outcome.CHANGES_PENDING}


def run(*, settings: ApplySettings, desired: DesiredOptions | None = None, edges: Edges | None = None) -> CommandResult:
    """Install the desired unit and restart its service (guarded: check, judge, roll back)."""
    current().unit = unit_or_none(settings.name)
    request = request_from_settings(settings, command="apply", desired=desired)
    return execute(request, edges or real.real_edges(settings.backend))


def run_rollback(*, settings: RollbackSettings, edges: Edges | None = None) -> CommandResult:
    """Switch the service back to its previous good deploy (an apply of it, guarded)."""
    current().unit = unit_or_none(settings.name)
    request = request_from_settings(ApplySettings(**asdict(settings)), command="rollback")
    from unitctl.fsutil import naming

    with naming(request.history_dir):
        request = rollback_request(request)
    return execute(request, edges or real.real_edges(settings.backend))


def execute(request: ApplyRequest, edges: Edges) -> CommandResult:
    """Run one engine attempt; return its result (a failure after the attempt began carries its error)."""
    from unitctl import github
    from unitctl.deploy import engine
    from unitctl.fsutil import naming

    current().unit = request.unit
    # An OS error without a file name (a write through the lock's descriptor) names where unitctl's files are.
    with naming(request.history_dir):
        try:
            result, error = engine.run_result(request, edges)
        except UnitctlError as err:
            with contextlib.suppress(OSError, ValueError):
                github.emit_error(err, unit=request.unit, command=request.command)  # no-op outside GitHub Actions
            raise
    # The outcome is recorded: reporting it is a courtesy to a caller who may be gone, never part of it.
    with contextlib.suppress(OSError, ValueError):
        github.emit(result, error=error)
    return _result(request, result, error)


def _result(request: ApplyRequest, result: ApplyResult, error: UnitctlError | None) -> CommandResult:
    outcome = Outcome.of_error(error) if error is not None else _OUTCOMES[result.record.outcome]
    return CommandResult(
        command=request.command,
        unit=request.unit,
        outcome=outcome,
        message=result.message,
        result=result.to_json(),
        text=result.message + "\n" if error is None else "",
        error=error,
    )


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


def request_from_settings(s: ApplySettings, *, command: str, desired: DesiredOptions | None = None) -> ApplyRequest:
    """Build an ApplyRequest from the merged settings and the desired-state options (as ``diff`` takes)."""
    from unitctl.desired import resolve

    strategy = parse_strategy(s.strategy or DEFAULT_STRATEGY)
    unit = s.unit
    # unit_file may come from unitctl.toml: it takes part in the "one way to say what the unit becomes" check.
    opts = replace(desired or DesiredOptions(), unit_file=s.unit_file or None)
    want = resolve(s.name, opts, cpu_count=os.cpu_count())
    return ApplyRequest(
        unit=unit,
        unit_file=Path(want.unit_file) if want.unit_file else None,
        unit_bytes=want.rendered.encode("utf-8", "surrogateescape") if want.rendered is not None else None,
        socket_bytes=_socket_bytes(want, unit),
        rewrite=want.rewrite,
        guarded=bool(s.guarded) if command == "apply" else True,
        repo=Path(s.repo).absolute() if s.repo else None,
        rev=s.rev,
        ready_url=s.ready_url,
        ready_timeout=float(s.ready_timeout or DEFAULT_READY_TIMEOUT),
        ready_interval=float(s.ready_interval or DEFAULT_READY_INTERVAL),
        strategy=strategy,
        fail_after=DEFAULT_FAIL_AFTER if s.fail_after is None else int(s.fail_after),
        pre_import=s.pre_import,
        no_pre_import=bool(s.no_pre_import),
        canary=s.canary is not False,
        build_cmd=tuple(s.build_cmd or ()),
        pre_switch_cmd=tuple(s.pre_switch_cmd or ()),
        post_ready_cmd=tuple(s.post_ready_cmd or ()),
        hook_timeout=float(s.hook_timeout or DEFAULT_HOOK_TIMEOUT),
        dry_run=s.dry_run,
        edit_template=s.edit_template,
        history_dir=s.history_path,
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
