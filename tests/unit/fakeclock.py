"""A fake monotonic clock for the unit tests: time moves only when the code under test sleeps (or a test says so)."""

from __future__ import annotations


class Clock:
    """Call it for the time; ``sleep`` advances it and records each sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
