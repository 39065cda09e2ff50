"""The fault-injection matrix on the real sandbox: every step of the engine × kill -9, SIGHUP, closed pipes, SIGTERM.

Each cell deploys a good or a bad release with the engine paused at one step, hurts it there, and checks the
invariants listed in faults.CellResult.problems (never a torn unit, never exit 0 while the readiness URL fails,
the next apply recovers and tells the truth). CI runs the whole matrix; on a developer's machine the quick subset
runs unless UNITCTL_FAULTS=all (or deselect it with -m 'not faults'). bench/fault_matrix.py prints the same cells
as a table.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from faults import cells, run_cell

from unitctl.sandbox import Sandbox

pytestmark = [pytest.mark.systemd, pytest.mark.faults]


def _full() -> bool:
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return ci or os.environ.get("UNITCTL_FAULTS", "") == "all"


@pytest.mark.parametrize(("release", "step", "fault"), cells(quick=not _full()))
def test_fault_cell(box: Sandbox, venv_bin: Path, release: str, step: str, fault: str) -> None:
    res = run_cell(box, venv_bin, release, step, fault)
    # Every step listed for this release is performed by such a deploy: a cell that never paused means the
    # engine lost its hook or skipped a step, which must not pass as "nothing to check".
    assert res.reached, f"the engine never paused at {step!r} ({'; '.join(res.notes)})"
    assert res.problems() == [], f"{res.cell()}: {res.notes}"
