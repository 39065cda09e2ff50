"""A deploy's progress lines, which it can lose without noticing: the caller may go away at any moment.

A CI job that is cancelled closes the SSH channel: stdout and stderr become closed pipes (EPIPE), a terminal
that hangs up answers EIO. Nothing printed is part of the outcome, so a write that fails turns that stream
into a null sink (the descriptor is pointed at /dev/null, so even the interpreter's final flush succeeds)
and the deploy goes on; the outcome is in the journal and the history for whoever comes back.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import IO

from unitctl.history import Phase
from unitctl.probe import ProbeResult


def safe_write(stream: IO[str], text: str) -> bool:
    """Write and flush ``text``; on an output error silence ``stream`` for good and return False."""
    try:
        stream.write(text)
        stream.flush()
        return True
    except (OSError, ValueError):
        silence(stream)
        return False


def silence(stream: IO[str]) -> None:
    """Point ``stream``'s descriptor at /dev/null: later writes and the final flush go nowhere, without error."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)


def settle() -> None:
    """Flush stdout and stderr now, silencing whichever the caller closed (the exit code must not change)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            try:
                stream.flush()
            except (OSError, ValueError):
                silence(stream)


class Reporter:
    """One line per phase with its duration on ``stream``; a live countdown while waiting on a terminal."""

    def __init__(self, stream: IO[str] | None = None, *, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        try:
            self.live = bool(getattr(self.stream, "isatty", lambda: False)()) and not quiet
        except (OSError, ValueError):
            self.live = False
        self._spinning = False
        self._frame = 0

    def _write(self, text: str) -> None:
        if not self.quiet and not safe_write(self.stream, text):
            # The caller is gone: stop talking, keep deploying.
            self.quiet, self.live = True, False

    def line(self, text: str) -> None:
        self._clear()
        self._write(f"unitctl: {text}\n")

    def phase(self, p: Phase) -> None:
        mark = "ok" if p.ok else "FAILED"
        detail = f"  {p.detail}" if p.detail else ""
        self.line(f"{p.name:<10} {p.seconds:6.2f}s  {mark}{detail}")

    def waiting(self, what: str, elapsed: float, timeout: float, last: ProbeResult | None) -> None:
        if not self.live:
            return
        frames = "|/-\\"
        self._frame += 1
        answer = last.describe() if last else "no answer yet"
        text = f"\r{frames[self._frame % 4]} {what}: {elapsed:5.1f}s / {timeout:g}s  ({answer})"
        self._write(text[:200] + "\x1b[K")
        self._spinning = True

    def _clear(self) -> None:
        if self._spinning:
            self._spinning = False
            self._write("\r\x1b[K")
