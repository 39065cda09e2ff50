"""Gunicorn's worker count as unitctl takes it: N or ``auto``, capped by ``--max-workers``; every rule and message.

Upstream: Gunicorn's ``workers`` setting (a positive integer) and its documented recommendation of
(2 x CPUs) + 1 workers, which ``auto`` computes for the host unitctl runs on. render, rewrite, diff and apply all
come here, so a request is refused (or accepted) with the same words by every command.
"""

from __future__ import annotations

from typing import Literal

from unitctl.errors import UsageError

__all__ = ["Workers", "auto_workers", "check_max_workers", "parse_request", "parse_workers", "resolve_workers"]

Workers = int | Literal["auto"]

_WORKERS_HINT = "e.g. --workers 4, or --workers auto"


def _bad_workers(value: object) -> UsageError:
    return UsageError(f"--workers must be a positive integer or 'auto', not {value!r}", hint=_WORKERS_HINT)


def parse_workers(value: str) -> Workers:
    """Parse a ``--workers`` value: a positive decimal integer or ``auto``."""
    if value == "auto":
        return "auto"
    try:
        n = int(value, 10)
    except ValueError:
        raise _bad_workers(value) from None
    if n < 1:
        raise _bad_workers(value)
    return n


def check_max_workers(max_workers: int | None) -> None:
    """Refuse a ``--max-workers`` below 1 (None: not given)."""
    if max_workers is not None and (isinstance(max_workers, bool) or max_workers < 1):
        raise UsageError(
            f"--max-workers must be a positive integer, not {max_workers!r}",
            hint="pass --max-workers N with N >= 1, or drop it",
        )


def parse_request(workers: str | None, max_workers: int | None) -> Workers | None:
    """Check ``--workers``/``--max-workers`` of a rewrite before any unit is read; return the parsed ``--workers``.

    ``--max-workers`` caps a count, so it needs ``--workers`` (a rewrite has no default count to cap); an explicit
    count above the cap is refused here too, before a deploy asks systemd anything.
    """
    check_max_workers(max_workers)
    if max_workers is not None and workers is None:
        raise UsageError("--max-workers caps --workers auto", hint="add --workers auto")
    if workers is None:
        return None
    parsed = parse_workers(workers)
    if parsed != "auto":
        resolve_workers(parsed, cpu_count=None, max_workers=max_workers)
    return parsed


def auto_workers(cpu_count: int | None, max_workers: int | None = None) -> int:
    """Return Gunicorn's recommended (2 x CPUs) + 1 workers, capped by ``max_workers``; refuse an unknown CPU count."""
    check_max_workers(max_workers)
    if cpu_count is None or cpu_count < 1:
        raise UsageError("cannot compute --workers auto: the CPU count is unknown", hint="pass --workers N")
    n = 2 * cpu_count + 1
    return min(n, max_workers) if max_workers is not None else n


def resolve_workers(workers: Workers | str | None, *, cpu_count: int | None, max_workers: int | None = None) -> int:
    """Turn a ``--workers`` request (N or ``auto``) into a worker count within ``--max-workers``; refuse the rest."""
    check_max_workers(max_workers)
    if workers is None:
        parse_request(None, max_workers)  # raises when a cap was given without a count
        raise UsageError("no --workers was given", hint=_WORKERS_HINT)
    if isinstance(workers, str):
        workers = parse_workers(workers)
    if workers == "auto":
        return auto_workers(cpu_count, max_workers)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise _bad_workers(workers)
    if max_workers is not None and workers > max_workers:
        raise UsageError(f"--workers {workers} is above --max-workers {max_workers}", hint="lower one of them")
    return workers
