"""Per-unit lock: one apply/rollback of a unit at a time, and a refusal that names the holder.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on ``/run/lock/unitctl/<unit>.lock``: one place per machine, whatever
``--history-dir`` a command was given, so two deploys of a unit can never both run. ``$UNITCTL_LOCK_DIR``
moves it (tests, or a system without /run/lock). The kernel drops it when the
holder dies, so a stale file never blocks anyone; the file's content (pid, start time, command)
is only there to tell the refused caller who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from unitctl import fsutil
from unitctl.errors import InputError, LockHeldError

DEFAULT_DIR = Path("/run/lock/unitctl")
LOCK_DIR_ENV = "UNITCTL_LOCK_DIR"


def default_dir() -> Path:
    """Return the lock directory: $UNITCTL_LOCK_DIR, else /run/lock/unitctl."""
    return Path(os.environ.get(LOCK_DIR_ENV) or DEFAULT_DIR)


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a lock."""

    pid: int
    since: float  # epoch seconds
    command: str

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        return f"pid {self.pid} since {when} ({self.command})"


def lock_path(directory: Path, unit: str) -> Path:
    """Return the lock file of ``unit`` in ``directory``."""
    return directory / f"{unit}.lock"


def read_holder(path: Path) -> Holder | None:
    """Return what the lock file says about its holder, or None if it says nothing usable."""
    try:
        data = json.loads(path.read_text())
        return Holder(int(data["pid"]), float(data["since"]), str(data["command"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def unit_lock(directory: Path, unit: str, *, command: Sequence[str] | None = None) -> Iterator[Holder]:
    """Hold the lock of ``unit`` for the block; raise LockHeldError at once if someone else holds it."""
    try:
        fsutil.private_dir(directory)  # 0700, root's: the holder's command line is nobody else's business
    except OSError as exc:
        raise InputError(
            f"cannot create the lock directory {directory}: {exc.strerror}", hint=f"run as root or set {LOCK_DIR_ENV}"
        ) from exc
    path = lock_path(directory, unit)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise InputError(
            f"cannot open the lock file {path}: {exc.strerror}", hint=f"run as root or set {LOCK_DIR_ENV}"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(path)
            who = holder.describe() if holder else "another process (no holder recorded)"
            raise LockHeldError(
                f"{unit} is locked by {who}: another apply or rollback of this unit is running",
                hint="wait for it to finish, then retry",
            ) from None
        me = Holder(os.getpid(), time.time(), " ".join(command if command is not None else sys.argv)[:300])
        with fsutil.naming(path):  # a full disk here is one line naming the lock file
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": me.pid, "since": me.since, "command": me.command}).encode(), 0)
            os.fsync(fd)
        yield me
    finally:
        # Closing the descriptor releases the flock; the file stays (removing it would race a new locker).
        os.close(fd)
