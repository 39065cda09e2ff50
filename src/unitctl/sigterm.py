"""SIGTERM as an exception: the one handler that lets a block's cleanup run when a process is told to stop."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType


def in_main_thread() -> bool:
    """Return True in the main thread, the only one Python lets install signal handlers."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def raising(to_exception: Callable[[int], BaseException], *, enabled: bool = True) -> Iterator[None]:
    """Raise ``to_exception(signum)`` when SIGTERM arrives in the block; the previous handler comes back after.

    Outside the main thread (or not ``enabled``) nothing is installed: Python delivers signals to the main thread.
    """
    if not enabled or not in_main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise to_exception(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
