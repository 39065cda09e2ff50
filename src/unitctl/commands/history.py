"""``unitctl history``: list a unit's recorded deploys, or prune them to the newest ``--keep N``."""

from __future__ import annotations

from unitctl import history
from unitctl.commands.report import CommandResult, Outcome, current
from unitctl.commands.settings import HistorySettings, default_argv, unit_or_none
from unitctl.errors import UsageError


def run(*, settings: HistorySettings) -> CommandResult:
    """List the records (oldest first, the last ``limit``), or prune with ``settings.prune``."""
    current().unit = unit_or_none(settings.name)
    if not settings.prune and (settings.keep is not None or settings.dry_run):
        raise UsageError("--keep and --dry-run go with --prune", hint="add --prune")
    if settings.prune and settings.keep is None:
        raise UsageError("--prune needs --keep N", hint="add e.g. --keep 50")
    unit = settings.unit
    if settings.prune:
        return _prune(settings, unit)
    directory = settings.history_path
    records = history.read(directory, unit)
    if settings.limit > 0:
        records = records[-settings.limit :]
    if records:
        lines = list(history.iter_lines(records))
        message = f"{unit}: {len(records)} record(s) in {directory}"
    else:
        lines = [message := f"{unit}: no deploys recorded in {directory}"]
    return CommandResult(
        command="history",
        unit=unit,
        outcome=Outcome.OK,
        message=message,
        result={"records": [r.to_json() for r in records]},
        text="".join(line + "\n" for line in lines),
    )


def _prune(settings: HistorySettings, unit: str) -> CommandResult:
    """Prune a unit's history to its ``keep`` newest records (and the ones rollback needs)."""
    from unitctl import lock

    assert settings.keep is not None
    directory = settings.history_path
    if settings.dry_run:
        pruned = history.prune(directory, unit, settings.keep, dry_run=True)
    else:
        # The unit's own deploys wait (or we do): its journal and last records are not rewritten under it.
        with lock.unit_lock(lock.default_dir(), unit, command=default_argv()):
            pruned = history.prune(directory, unit, settings.keep)
    verb = "would remove" if settings.dry_run else "removed"
    lines = [f"{verb}: {line}" for line in history.iter_lines(pruned.removed)]
    lines += [f"{verb}: {directory / 'units' / digest}" for digest in pruned.units]
    summary = (
        f"{unit}: {verb} {len(pruned.removed)} record(s) and {len(pruned.units)} stored unit file(s), "
        f"kept {pruned.kept}"
    )
    if settings.dry_run:
        outcome = Outcome.CHANGES_PENDING if pruned.removed else Outcome.NOTHING_TO_DO
    else:
        outcome = Outcome.OK if pruned.removed or pruned.units else Outcome.NOTHING_TO_DO
    return CommandResult(
        command="history",
        unit=unit,
        outcome=outcome,
        message=summary,
        result={
            "dry_run": settings.dry_run,
            "removed": [r.to_json() for r in pruned.removed],
            "removed_units": [str(directory / "units" / digest) for digest in pruned.units],
            "kept": pruned.kept,
        },
        text="".join(line + "\n" for line in [*lines, summary]),
    )
