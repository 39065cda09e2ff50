"""``unitctl rewrite``: change the Gunicorn command line inside an existing unit, nothing else."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unitctl.commands.settings import RewriteSettings
from unitctl.errors import ExitCode, InputError, UsageError
from unitctl.rewrite import RewriteResult


@dataclass(frozen=True)
class RewriteOutput:
    """What rewrite prints on stdout (bytes: a unit need not be UTF-8) and its exit code."""

    stdout: bytes
    exit_code: int = int(ExitCode.OK)


def run(*, settings: RewriteSettings, err: Callable[[str], None], colour: bool = False) -> RewriteOutput:
    """Rewrite FILE as asked: print it, check it, replace it in place, or write a drop-in beside it.

    ``err`` receives the lines for stderr (warnings, the diff before a write, what was written) as they happen.
    """
    s = settings
    if s.in_place + bool(s.drop_in) + s.check > 1:
        raise UsageError("--in-place, --drop-in and --check exclude each other", hint="pick one")
    from unitctl.fsutil import read_unit_bytes
    from unitctl.gunicorn.workers import parse_request

    wanted = parse_request(s.workers, s.max_workers)
    path = Path(s.file)
    data = read_unit_bytes(path)
    text = data.decode("utf-8", "surrogateescape")
    if wanted is None and not s.no_preload:
        if s.in_place or s.drop_in:
            raise UsageError("nothing to write without --workers or --no-preload", hint="add an operation")
        from unitctl.unitfile import UnitFile

        UnitFile.parse(text, path=s.file)  # refuse (exit 3) what systemd would not load
        return RewriteOutput(b"no changes\n" if s.check else data)
    from unitctl import rewrite
    from unitctl.gunicorn import default_read_file

    make = rewrite.dropin_for if s.drop_in else rewrite.rewrite_unit
    spec = rewrite.RewriteSpec(
        workers=wanted, no_preload=s.no_preload, max_workers=s.max_workers, cpu_count=os.cpu_count(), strict=s.strict
    )
    result = make(text, spec, read_file=default_read_file, path=s.file)
    for warning in result.warnings:
        err(f"unitctl: warning: {warning}\n")
    summary = ", ".join(result.changes) or "no changes"
    if s.check:
        return RewriteOutput(f"{summary}\n".encode(), int(ExitCode.CHANGES_PENDING if result.changed else ExitCode.OK))
    if s.in_place or s.drop_in:
        _write(s, path, result, err, colour)
        return RewriteOutput(b"")
    return RewriteOutput(result.text.encode("utf-8", "surrogateescape"))


def _write(s: RewriteSettings, path: Path, result: RewriteResult, err: Callable[[str], None], colour: bool) -> None:
    """Replace the file (or write the drop-in), showing the diff first."""
    text, summary = result.text, ", ".join(result.changes) or "no changes"
    from unitctl.diff import colourize, unified
    from unitctl.output import write_output

    target = path.resolve()  # a symlinked unit stays a symlink: replace the file it points to
    if s.drop_in:
        from unitctl.unitname import validate_unit_name

        if not Path(s.drop_in).is_dir():
            raise InputError(f"--drop-in {s.drop_in}: no such directory", hint="e.g. /etc/systemd/system")
        target = Path(s.drop_in) / f"{validate_unit_name(path.name)}.d" / "50-unitctl.conf"
    if not result.changed:
        err(f"{s.file}: no changes; nothing written\n")
        return
    # Show the diff before anything is written.
    # Bytes, not read_text: universal newlines would turn CRLF into LF and mark every line as changed.
    old = target.read_bytes().decode("utf-8", "surrogateescape") if target.is_file() else ""
    for line in colourize(unified(old, text, old_name=str(target), new_name=str(target)), colour):
        err(line)
    target.parent.mkdir(mode=0o755, exist_ok=True)
    write_output(target, text)
    err(f"wrote {target}: {summary}\n")
