"""Signals during a deploy: SIGINT/SIGTERM roll back, SIGHUP changes nothing, nothing cuts a rollback short.

SIGTERM becomes ``Interrupted`` through ``unitctl.sigterm.raising``, the handler the sandbox uses too.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

from unitctl.sigterm import in_main_thread

_HELD = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGTERM (or SIGINT) arrived during a transaction; carries the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def signame(self) -> str:
        return signal.Signals(self.signum).name


@contextlib.contextmanager
def caller_independent(enabled: bool) -> Iterator[None]:
    """Ignore SIGHUP for the block, in this process and the commands it runs (the ignore is inherited).

    A hang-up means the caller went away, not that the deploy should stop: the outcome must not depend on it.
    """
    if not enabled or not in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


@contextlib.contextmanager
def held(enabled: bool) -> Iterator[list[int]]:
    """Block SIGINT/SIGTERM for the block (children inherit the mask); yield the list of signals that arrived."""
    noted: list[int] = []
    if not enabled or not in_main_thread():
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
