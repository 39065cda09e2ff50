"""Console and file output shared by the commands: colour rules and atomic writes.

Colour only when the stream is a terminal and ``NO_COLOR`` is unset (https://no-color.org:
any non-empty value disables it). Files are replaced atomically: a temporary file in the same
directory, fsync, rename, fsync of the directory, so a reader sees the old or the new file,
never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO

from unitctl.errors import InputError

_CODES = {"red": "31", "green": "32", "yellow": "33", "cyan": "36", "bold": "1"}


def colour_enabled(stream: IO[str] | None, environ: dict[str, str] | None = None) -> bool:
    """Return True when ``stream`` is a terminal and NO_COLOR is not set."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return False
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


def style(text: str, colour: str, enabled: bool) -> str:
    """Wrap ``text`` in an ANSI colour when ``enabled``."""
    if not enabled or not text:
        return text
    return f"\x1b[{_CODES[colour]}m{text}\x1b[0m"


def atomic_write(path: Path, data: str, *, mode: int | None = None, like: Path | None = None) -> None:
    """Replace ``path`` with ``data`` atomically; copy mode and owner from ``like`` (default: ``path``)."""
    path = Path(path)
    directory = path.parent
    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory", hint="create it first or choose another path")
    reference = like if like is not None else path
    st = None
    with contextlib.suppress(FileNotFoundError):
        st = reference.stat()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".unitctl-tmp", dir=directory)
    except OSError as exc:
        raise InputError(f"{directory}: cannot write here: {exc.strerror}", hint="check permissions") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if st is not None:
            os.chmod(tmp, st.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
        else:
            os.chmod(tmp, 0o644 if mode is None else mode)
        if mode is not None and st is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise InputError(f"{path}: cannot write: {exc.strerror}", hint="check permissions and free space") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename is durable only once the directory entry is on disk.
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
