"""Golden rewrite cases, one folder each under tests/golden/.

A case holds ``input.service``, ``options.json`` and either ``expected.service`` (+ ``expected_report.txt``: the
changes and warnings) or ``expected_error.txt`` (the error class and its one-line message).

options.json keys: workers (N or "auto"), no_preload, max_workers, cpu_count, mode ("rewrite" | "dropin"),
files ({path: text} that read_file can see; absent: files are not read).

UNITCTL_REGEN_GOLDEN=1 rewrites the expected files from the current code (refused under CI, and a case that turns a
rewrite into a refusal or back needs UNITCTL_REGEN_GOLDEN=kind): see goldens.py; review them by eye before committing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from goldens import NEW, regen_mode, regenerate

from unitctl.errors import UnitctlError
from unitctl.gunicorn import ReadFile
from unitctl.rewrite import RewriteSpec, dropin_for, rewrite_unit

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input.service").exists())
REWRITE_CASES = [
    c
    for c in CASES
    if (GOLDEN / c / "expected.service").exists() and '"dropin"' not in (GOLDEN / c / "options.json").read_text()
]


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def _options(case: str) -> tuple[RewriteSpec, ReadFile | None, bool]:
    """Return a case's rewrite (from its options.json), the files it may read, and whether it is a drop-in case."""
    opts: dict[str, Any] = json.loads(_read(GOLDEN / case / "options.json"))
    files: dict[str, str] | None = opts.get("files")
    spec = RewriteSpec(
        workers=opts.get("workers"),
        no_preload=bool(opts.get("no_preload", False)),
        max_workers=opts.get("max_workers"),
        cpu_count=opts.get("cpu_count"),
    )
    return spec, None if files is None else files.get, opts.get("mode") == "dropin"


def run_case(case: str) -> tuple[str | None, str]:
    """Run one case; return (new unit text or None, report or error text)."""
    spec, read_file, dropin = _options(case)
    func = dropin_for if dropin else rewrite_unit
    try:
        result = func(_read(GOLDEN / case / "input.service"), spec, read_file=read_file)
    except UnitctlError as exc:
        return None, f"{type(exc).__name__} (exit {int(exc.exit_code)}): {exc}\n"
    report = "".join(f"change: {c}\n" for c in result.changes) + "".join(f"warning: {w}\n" for w in result.warnings)
    return result.text, report


def test_there_are_many_cases() -> None:
    assert len(CASES) >= 40
    assert len(REWRITE_CASES) >= 30


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    d = GOLDEN / case
    text, report = run_case(case)
    if regen_mode():
        refusal = {"expected.service": None, "expected_report.txt": None, "expected_error.txt": report}
        rewrite = {"expected.service": text, "expected_report.txt": report, "expected_error.txt": None}
        regenerate(
            d,
            refusal if text is None else rewrite,
            kind_before="refusal"
            if (d / "expected_error.txt").exists()
            else "rewrite"
            if (d / "expected.service").exists()
            else NEW,
            kind_after="refusal" if text is None else "rewrite",
        )
        return
    if (d / "expected_error.txt").exists():
        assert text is None, f"{case}: expected a refusal, got a rewrite"
        assert report == _read(d / "expected_error.txt")
        return
    assert text is not None, f"{case}: refused: {report}"
    assert text == _read(d / "expected.service")
    assert report == _read(d / "expected_report.txt")


@pytest.mark.parametrize("case", REWRITE_CASES)
def test_golden_is_idempotent(case: str) -> None:
    """Rewriting the expected output again with the same options changes nothing."""
    expected = _read(GOLDEN / case / "expected.service")
    spec, read_file, _ = _options(case)
    again = rewrite_unit(expected, spec, read_file=read_file)
    assert again.text == expected
    assert again.changes == []
