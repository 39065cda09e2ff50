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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from unitctl.errors import InputError

DEFAULT_MODE = 0o644
# unitctl's own state (history, unit copies) holds journal excerpts and unit files with secrets: owner only.
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


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


# A unit file, drop-in, template or unitctl.toml is a few KiB; anything past this is a mistake (/dev/zero, a
# log file given by accident) that would otherwise exhaust memory before any check could refuse it.
MAX_INPUT_BYTES = 4 * 1024 * 1024

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def non_regular_kind(path: Path) -> str | None:
    """Return what ``path`` is (after following links) when it exists and is not a regular file, else None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    return None if stat.S_ISREG(mode) else _kind(mode)


def read_input(
    path: Path, *, what: str = "unit file", hint: str = "check the path", limit: int = MAX_INPUT_BYTES
) -> bytes:
    """Read a regular file the user named, at most ``limit`` bytes; every way it cannot be read is one InputError."""
    not_regular = f"pass the {what} itself"
    try:
        st = path.stat()  # follows links: a symlinked unit is read through its target
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path}: is {_kind(st.st_mode)}, not a {what}", hint=not_regular)
        # A FIFO swapped in after the stat must not block the open; the fstat below refuses it.
        fd = _open_for_reading(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", hint=hint) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}", hint="check its permissions") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path}: is {_kind(st.st_mode)}, not a {what}", hint=not_regular)
        if st.st_size > limit:
            raise _too_large(path, st.st_size, what, limit)
        data = _read_at_most(fd, limit + 1)  # st_size can lie (/proc says 0; a file can grow): count what is read
        if len(data) > limit:
            raise _too_large(path, len(data), what, limit, at_least=True)
        return data
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}", hint="check its permissions") from exc
    finally:
        os.close(fd)


def _open_for_reading(path: str | Path) -> int:
    """Open ``path`` read-only so that neither a FIFO (O_NONBLOCK) nor a terminal (O_NOCTTY) can block or bind us."""
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)


def _read_at_most(fd: int, limit: int) -> bytes:
    """Read from ``fd`` until EOF or ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _too_large(path: Path, size: int, what: str, limit: int, *, at_least: bool = False) -> InputError:
    more = "more than " if at_least else ""
    return InputError(
        f"{path}: {more}{size} bytes ({size / 2**20:.1f} MiB) is too large for a {what} (limit {limit // 2**20} MiB)",
        hint=f"pass the {what} itself",
    )


def read_unit_bytes(path: Path, *, hint: str = "check the path") -> bytes:
    """Read a unit file the user named (capped, regular files only); every way it cannot be read is one InputError."""
    return read_input(path, what="unit file", hint=hint)


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


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """Give an OSError raised in the block the file name it lacks (writes through a descriptor name none)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


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
    with naming(directory):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".unitctl-tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with naming(path), os.fdopen(fd, "wb") as fh:
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


def private_dir(directory: Path) -> None:
    """Create ``directory`` (and parents) 0700, or tighten an existing one to 0700 and, as root, root's."""
    directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)  # the umask may loosen it: tighten below
    if os.lstat(directory).st_mode & stat.S_IWOTH:
        # A shared directory such as /tmp: others can plant files in it, and 0700 would break it for them.
        raise InputError(
            f"{directory} is writable by every user: it cannot hold unitctl's private state",
            hint="give a directory of unitctl's own (e.g. /var/lib/unitctl)",
        )
    tighten(directory, PRIVATE_DIR)


def tighten(path: Path, mode: int) -> None:
    """Give ``path`` exactly ``mode`` (never following a symlink) and, when unitctl runs as root, root's ownership."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        _fix(fd, mode)
    finally:
        os.close(fd)


def open_private(path: Path, flags: int) -> int:
    """Open ``path`` with ``flags`` as a 0600 file (created so, existing ones tightened); never through a symlink."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        _fix(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fix(fd: int, mode: int) -> None:
    st = os.fstat(fd)
    if stat.S_IMODE(st.st_mode) != mode:
        os.fchmod(fd, mode)
    if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, 0):
        os.fchown(fd, 0, 0)


def read_capped(path: str | Path, limit: int) -> bytes | None:
    """Return the first ``limit`` bytes of the regular file ``path``; None when missing or not a regular file.

    For files a unit names (EnvironmentFile=, credentials), read as best effort: a FIFO or device named in a unit
    cannot hang unitctl, and what cannot be read is simply not there. Files the user names go through read_input.
    """
    try:
        fd = _open_for_reading(path)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return _read_at_most(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)
