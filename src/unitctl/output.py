"""Console and file output shared by the commands: colour rules and atomic writes.

Colour when the stream is a terminal or ``FORCE_COLOR`` is set (not to 0/false), never when ``NO_COLOR`` is
(https://no-color.org: any non-empty value disables it, and it wins). Files are replaced atomically through
``fsutil.atomic_write`` (temporary file in the same directory, fsync, rename): a reader sees the old or the new file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from unitctl.errors import InputError

_CODES = {"red": "31", "green": "32", "yellow": "33", "cyan": "36", "bold": "1"}


def colour_enabled(stream: IO[str] | None, environ: dict[str, str] | None = None) -> bool:
    """Return True for a terminal, or when FORCE_COLOR is set (not to 0/false); never when NO_COLOR is set."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return False  # no-color.org: it wins over everything, FORCE_COLOR included
    if env.get("FORCE_COLOR", "").strip().lower() not in ("", "0", "false"):
        return True  # force-color.org: CI logs (GitHub Actions renders ANSI) without a terminal
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


def style(text: str, colour: str, enabled: bool) -> str:
    """Wrap ``text`` in an ANSI colour when ``enabled``."""
    if not enabled or not text:
        return text
    return f"\x1b[{_CODES[colour]}m{text}\x1b[0m"


def write_output(path: Path, data: str, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (mode and owner kept); translate failures to InputError."""
    from unitctl import fsutil

    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: no such directory", hint="create it first or choose another path")
    kind = fsutil.non_regular_kind(path)
    if kind is not None:  # replacing a FIFO, a device (-o /dev/stdout) or a directory is never what was meant
        raise InputError(f"{path}: is {kind}, not a regular file", hint="give a file name")
    try:
        fsutil.atomic_write(path, data.encode("utf-8"), mode=mode)
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror}", hint="check permissions and free space") from exc
