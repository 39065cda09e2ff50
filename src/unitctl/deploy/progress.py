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
from collections.abc import Mapping
from typing import IO

from unitctl import masking
from unitctl.history import Phase
from unitctl.probe import ProbeResult

# Without a terminal (a CI log) a wait shows one line this often, so a slow release does not look like a hang.
HEARTBEAT_SECONDS = 10.0


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
    """One line per phase with its duration on ``stream``; while waiting, a live countdown on a terminal, else a
    heartbeat line every HEARTBEAT_SECONDS (inside a ``::group::`` on GitHub Actions)."""

    def __init__(
        self, stream: IO[str] | None = None, *, quiet: bool = False, environ: Mapping[str, str] | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        try:
            self.live = bool(getattr(self.stream, "isatty", lambda: False)()) and not quiet
        except (OSError, ValueError):
            self.live = False
        self.github = (os.environ if environ is None else environ).get("GITHUB_ACTIONS") == "true"
        self._spinning = False
        self._frame = 0
        self._wait: str | None = None  # the wait a heartbeat is running for
        self._next_beat = HEARTBEAT_SECONDS
        self._grouped = False

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
        answer = last.describe() if last else "no answer yet"
        if not self.live:
            self._heartbeat(what, elapsed, timeout, answer)
            return
        frames = "|/-\\"
        self._frame += 1
        text = f"\r{frames[self._frame % 4]} {what}: {elapsed:5.1f}s / {timeout:g}s  ({answer})"
        self._write(text[:200] + "\x1b[K")
        self._spinning = True

    def _heartbeat(self, what: str, elapsed: float, timeout: float, answer: str) -> None:
        if self.quiet:
            return
        if self._wait != what:  # a new wait (the next line or phase ends the previous one: _clear)
            self._clear()
            # The next multiple of the period: a wait a warning line interrupted resumes its rhythm.
            self._wait, self._next_beat = what, (elapsed // HEARTBEAT_SECONDS + 1) * HEARTBEAT_SECONDS
            if self.github:
                self._write(f"::group::unitctl: {masking.mask(what)} (at most {timeout:g} s)\n")
                self._grouped = True
        if elapsed < self._next_beat:
            return
        self._next_beat = (elapsed // HEARTBEAT_SECONDS + 1) * HEARTBEAT_SECONDS  # one line however long the tick
        text = f"{what}: {elapsed:.0f} s of {timeout:g} s, last answer {answer}"
        self._write(f"unitctl: {masking.mask(text)[:300]}\n")

    def _clear(self) -> None:
        """End what the last wait showed: the spinner's line on a terminal, the heartbeat's group in CI."""
        if self._spinning:
            self._spinning = False
            self._write("\r\x1b[K")
        self._wait = None
        if self._grouped:
            self._grouped = False
            self._write("::endgroup::\n")
