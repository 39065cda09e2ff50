"""The desired unit: what ``diff`` compares the installed unit with and what ``apply`` installs.

Both commands take the same options and turn them into the desired unit here, one way only:

    --unit-file FILE                    the file's bytes replace the installed unit
    --render [--app ... --workers ...]  the unit ``unitctl render`` makes (flags over [render] of unitctl.toml)
    --workers/--max-workers/--no-preload   the installed unit, rewritten with minimal byte edits
    nothing                             (apply only) keep the installed unit

Light at import time: render and rewrite are imported when used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from unitctl.errors import RefusedError, UsageError

if TYPE_CHECKING:
    from unitctl.render import RenderFlags
    from unitctl.rewrite import RewriteSpec
    from unitctl.unitfile import UnitFile


@dataclass(frozen=True)
class DesiredOptions:
    """The desired-state options as given on the command line (None / False: not given)."""

    unit_file: str | None = None
    render: bool = False
    workers: str | None = None
    max_workers: int | None = None
    no_preload: bool = False
    # Only with --render (its workers and max_workers are the two above): --app, --bind, --user ...
    render_flags: RenderFlags | None = None


@dataclass(frozen=True)
class Desired:
    """Where the desired unit comes from: at most one of the three is set (none: keep the installed unit)."""

    unit_file: str | None = None
    rendered: str | None = None  # the rendered service unit's text
    rendered_socket: str | None = None  # the .socket unit rendered with it (socket activation): its text
    socket_name: str | None = None  # and its name, NAME.socket
    rewrite: RewriteSpec | None = None

    @property
    def keep_installed(self) -> bool:
        return self.unit_file is None and self.rendered is None and self.rewrite is None


def resolve(name: str | None, opts: DesiredOptions, *, cpu_count: int | None) -> Desired:
    """Check the options exclude each other properly; render the unit if asked; return the desired source."""
    from unitctl.render import RenderFlags, render_from_flags

    render_flags = opts.render_flags or RenderFlags()
    if not opts.render and (render_flags.given() or render_flags.env):
        raise UsageError("--app, --bind, --user ... describe a rendered unit", hint="add --render")
    rewrite_given = opts.workers is not None or opts.max_workers is not None or opts.no_preload
    if opts.unit_file is not None and (opts.render or rewrite_given):
        raise UsageError(
            "--unit-file is the whole desired unit: it excludes --render and --workers/--max-workers/--no-preload",
            hint="pass one way to say what the unit becomes (unit_file may come from unitctl.toml)",
        )
    if opts.render:
        if opts.no_preload:
            raise UsageError("--no-preload is for a rewrite; a rendered unit never preloads", hint="drop it")
        flags = replace(render_flags, name=name, workers=opts.workers, max_workers=opts.max_workers)
        result = render_from_flags(flags, cpu_count=cpu_count)
        return Desired(rendered=result.service, rendered_socket=result.socket,
                       socket_name=result.socket_name if result.socket is not None else None)  # fmt: skip
    if rewrite_given:
        from unitctl.gunicorn.workers import parse_request
        from unitctl.rewrite import RewriteSpec

        return Desired(
            rewrite=RewriteSpec(
                workers=parse_request(opts.workers, opts.max_workers),
                max_workers=opts.max_workers,
                no_preload=opts.no_preload,
                cpu_count=cpu_count,
            )
        )
    if opts.unit_file is not None:
        from unitctl.fsutil import read_unit_bytes
        from unitctl.unitfile import UnitFile

        # Refuse a missing, huge or non-regular file (a FIFO, /dev/zero) or one systemd would not load now,
        # before apply takes a lock or asks systemd.
        UnitFile.from_bytes(read_unit_bytes(Path(opts.unit_file), hint="check --unit-file"), path=opts.unit_file)
    return Desired(unit_file=opts.unit_file)


def sibling_socket(unit_file: Path, unit: str) -> bytes | None:
    """Return the ``NAME.socket`` beside ``unit_file`` (what ``unitctl render -o`` writes), or None: it travels
    with the unit, so a first deploy installs the pair and an unchanged installed socket is left alone."""
    from unitctl.fsutil import read_unit_bytes
    from unitctl.unitfile import UnitFile

    path = unit_file.parent / (unit.rsplit(".", 1)[0] + ".socket")
    if not path.exists():
        return None
    data = read_unit_bytes(path, hint=f"move it away, or make it the socket of {unit}")
    UnitFile.from_bytes(data, path=str(path))  # a socket systemd would not load is refused before anything changes
    return data


def rewrite_text(text: str, spec: RewriteSpec, *, path: str | None = None) -> tuple[str, list[str]]:
    """Apply the workers / no-preload rewrite to a unit's text; return the new text and the warnings."""
    from unitctl.gunicorn import default_read_file
    from unitctl.rewrite import rewrite_unit

    result = rewrite_unit(text, spec, read_file=default_read_file, path=path)
    return result.text, list(result.warnings)


def check_rewrite_target(text: str, *, path: str, dropins: Sequence[UnitFile], unit: str) -> None:
    """Refuse to rewrite the unit file at ``path`` when a drop-in holds the ExecStart= that systemd runs."""
    from unitctl.gunicorn import find_gunicorn
    from unitctl.unitfile import UnitFile, merged

    if not dropins:
        return
    view = merged(UnitFile.parse(text, path=path), dropins)
    holder = find_gunicorn(view).entry.path
    if holder != path:
        raise RefusedError(
            f"{unit}: the Gunicorn ExecStart= systemd runs comes from the drop-in {holder}; apply rewrites only {path}",
            hint=f"rewrite the drop-in with 'unitctl rewrite --in-place {holder}', or pass --unit-file",
        )
