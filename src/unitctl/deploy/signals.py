"""Signals during a deploy: SIGINT/SIGTERM roll back, SIGHUP changes nothing, nothing cuts a rollback short."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_HELD = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGTERM (or SIGINT) arrived during a transaction; carries the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def signame(self) -> str:
        return signal.Signals(self.signum).name


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def caller_independent(enabled: bool) -> Iterator[None]:
    """Ignore SIGHUP for the block, in this process and the commands it runs (the ignore is inherited).

    A hang-up means the caller went away, not that the deploy should stop: the outcome must not depend on it.
    """
    if not enabled or not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


@contextlib.contextmanager
def raising(enabled: bool) -> Iterator[None]:
    """Turn SIGTERM into Interrupted (SIGINT stays KeyboardInterrupt) for the block."""
    if not enabled or not _main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def held(enabled: bool) -> Iterator[list[int]]:
    """Block SIGINT/SIGTERM for the block (children inherit the mask); yield the list of signals that arrived."""
    noted: list[int] = []
    if not enabled or not _main_thread():
        yield noted
        return

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(signum)

    previous = {s: signal.signal(s, note) for s in _HELD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield noted
    finally:
        # Pending signals are delivered to `note` on unblocking, then the old handlers come back.
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for s, h in previous.items():
            signal.signal(s, h)
