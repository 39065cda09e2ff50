"""The one home of the worker-count rules (gunicorn/workers.py): every command's --workers/--max-workers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from unitctl.errors import ExitCode, UsageError
from unitctl.gunicorn import workers as w


@pytest.mark.parametrize(
    ("cpus", "cap", "expected"), [(1, None, 3), (2, None, 5), (4, 6, 6), (8, None, 17), (8, 17, 17)]
)
def test_auto_is_two_per_cpu_plus_one_capped(cpus: int, cap: int | None, expected: int) -> None:
    assert w.auto_workers(cpus, cap) == expected
    assert w.resolve_workers("auto", cpu_count=cpus, max_workers=cap) == expected


@pytest.mark.parametrize("cpus", [None, 0])
def test_auto_refuses_an_unknown_cpu_count(cpus: int | None) -> None:
    with pytest.raises(UsageError, match="the CPU count is unknown"):
        w.resolve_workers("auto", cpu_count=cpus)


def test_an_explicit_count_at_the_cap_is_allowed_and_one_above_is_not() -> None:
    assert w.resolve_workers(4, cpu_count=2, max_workers=4) == 4
    assert w.resolve_workers("4", cpu_count=None, max_workers=4) == 4
    with pytest.raises(UsageError) as exc:
        w.resolve_workers(5, cpu_count=2, max_workers=4)
    assert (exc.value.message, exc.value.hint) == ("--workers 5 is above --max-workers 4", "lower one of them")


@pytest.mark.parametrize("bad", ["0", "-1", "four", "2.5", "", "0x4"])
def test_parse_workers_refuses_what_is_not_a_positive_integer(bad: str) -> None:
    with pytest.raises(UsageError, match=r"^--workers must be a positive integer or 'auto', not ") as exc:
        w.parse_workers(bad)
    assert exc.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("bad", [0, -3, True, "0", "many"])
def test_resolve_refuses_the_same_with_the_same_words(bad: int | str) -> None:
    with pytest.raises(UsageError, match=r"^--workers must be a positive integer or 'auto', not "):
        w.resolve_workers(bad, cpu_count=2)


def test_parse_workers_accepts_auto_and_decimal_counts() -> None:
    assert w.parse_workers("auto") == "auto"
    assert w.parse_workers("4") == 4


@pytest.mark.parametrize("cap", [0, -1])
def test_max_workers_below_one_is_one_message_everywhere(cap: int) -> None:
    message = rf"^--max-workers must be a positive integer, not {cap};"
    calls: tuple[Callable[[], object], ...] = (
        lambda: w.resolve_workers("auto", cpu_count=2, max_workers=cap),
        lambda: w.resolve_workers(3, cpu_count=2, max_workers=cap),
        lambda: w.auto_workers(2, cap),
        lambda: w.parse_request("auto", cap),
    )
    for call in calls:
        with pytest.raises(UsageError, match=message):
            call()


def test_max_workers_without_workers_is_refused() -> None:
    with pytest.raises(UsageError, match="--max-workers caps --workers auto") as exc:
        w.parse_request(None, 8)
    assert exc.value.hint == "add --workers auto"
    with pytest.raises(UsageError, match="--max-workers caps --workers auto"):
        w.resolve_workers(None, cpu_count=2, max_workers=8)


def test_parse_request_passes_what_is_valid() -> None:
    assert w.parse_request(None, None) is None
    assert w.parse_request("auto", 3) == "auto"
    assert w.parse_request("7", None) == 7
    assert w.parse_request("4", 4) == 4


def test_parse_request_refuses_an_explicit_count_above_the_cap() -> None:
    with pytest.raises(UsageError, match="--workers 5 is above --max-workers 4"):
        w.parse_request("5", 4)
