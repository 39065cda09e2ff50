"""Gunicorn's worker count: a number or ``auto``, capped by ``--max-workers``."""

from __future__ import annotations

from unitctl.errors import UsageError

__all__ = ["auto_workers", "resolve_workers"]


def auto_workers(cpu_count: int, max_workers: int | None = None) -> int:
    """Return Gunicorn's recommended worker count (2 x CPUs) + 1, capped by max_workers."""
    if cpu_count < 1:
        raise UsageError(f"CPU count {cpu_count} is not positive", hint="pass --workers N")
    n = 2 * cpu_count + 1
    return min(n, max_workers) if max_workers is not None else n


def resolve_workers(workers: int | str, *, cpu_count: int | None, max_workers: int | None = None) -> int:
    """Turn a --workers request (N or 'auto') into a worker count; refuse zero, negatives and junk."""
    if max_workers is not None and max_workers < 1:
        raise UsageError(f"--max-workers {max_workers} must be at least 1", hint="pass a positive number")
    if workers == "auto":
        if cpu_count is None:
            raise UsageError("cannot compute --workers auto: the CPU count is unknown", hint="pass --workers N")
        return auto_workers(cpu_count, max_workers)
    try:
        n = int(workers)
    except (TypeError, ValueError):
        raise UsageError(f"--workers {workers!r} is not a number", hint="pass --workers N or --workers auto") from None
    if n < 1:
        raise UsageError(f"--workers {n} must be at least 1", hint="pass --workers N with N >= 1, or auto")
    if max_workers is not None and n > max_workers:
        raise UsageError(f"--workers {n} is above --max-workers {max_workers}", hint="lower one of them")
    return n
