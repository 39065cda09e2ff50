"""Crash-safe file edges: atomic replace that keeps mode and owner, and snapshots to restore.

An atomic write puts the bytes in a temporary file in the same directory, fsyncs it, gives it
the mode and owner of the file it replaces, renames it over the target and fsyncs the directory:
after a crash the target holds either the old or the new bytes, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from unitctl.errors import InputError

DEFAULT_MODE = 0o644


@dataclass(frozen=True)
class FileSnapshot:
    """A file as it was: its bytes, mode and owner, or absent."""

    path: Path
    data: bytes | None  # None: the file did not exist
    mode: int = DEFAULT_MODE
    uid: int = 0
    gid: int = 0

    @property
    def exists(self) -> bool:
        return self.data is not None

    @property
    def sha256(self) -> str | None:
        return sha256(self.data) if self.data is not None else None


def read_unit_bytes(path: Path, *, hint: str = "check the path") -> bytes:
    """Read a unit file the user named; every way it cannot be read is one InputError line."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", hint=hint) from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a unit file", hint="pass the unit file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}", hint="check its permissions") from exc


def sha256(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def snapshot(path: Path) -> FileSnapshot:
    """Capture ``path`` (bytes, mode, owner) or record that it is absent."""
    try:
        with path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read()
    except FileNotFoundError:
        return FileSnapshot(path, None)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}", hint="check its permissions") from exc
    return FileSnapshot(path, data, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry change (rename, create, unlink) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path,
    data: bytes,
    *,
    mode: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
) -> None:
    """Replace ``path`` with ``data`` atomically; keep the old file's mode and owner unless given."""
    directory = path.parent
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    if mode is None:
        mode = stat.S_IMODE(st.st_mode) if st else DEFAULT_MODE
    if uid is None:
        uid = st.st_uid if st else -1
    if gid is None:
        gid = st.st_gid if st else -1
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".unitctl-tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            if uid != -1 or gid != -1:
                os.fchown(fh.fileno(), uid, gid)
            os.fsync(fh.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(directory)


def remove(path: Path) -> None:
    """Remove ``path`` if present and make the removal durable."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def restore(snap: FileSnapshot) -> None:
    """Put ``snap.path`` back exactly as captured: same bytes, mode and owner, or absent."""
    if snap.data is None:
        remove(snap.path)
        return
    atomic_write(snap.path, snap.data, mode=snap.mode, uid=snap.uid, gid=snap.gid)
