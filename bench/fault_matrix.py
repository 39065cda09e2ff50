"""Print the fault × step matrix of the deploy engine, measured on a real systemd in a sandbox.

    .venv/bin/python bench/fault_matrix.py [--quick] [--release good|bad] [--step STEP ...] [--fault FAULT ...]

Boots a systemd-nspawn sandbox (root needed), and for every cell deploys a release with the engine paused at a
step, delivers the fault (kill -9, SIGHUP with the pipes closed, closed pipes, SIGTERM), then runs `unitctl status`
and the same `unitctl apply` again. A cell reads "faulted exit → re-run exit → release serving"; "killed" is a
kill -9, "-" a step that deploy never performs, and "!" marks a cell that broke an invariant (listed below the
table). docs/fault-matrix.md quotes its output.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from faults import FAULTS, RELEASES, CellResult, cells, run_cell, table  # noqa: E402

from unitctl import sandbox  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one step per phase only")
    parser.add_argument("--release", choices=RELEASES, action="append")
    parser.add_argument("--step", action="append")
    parser.add_argument("--fault", choices=FAULTS, action="append")
    args = parser.parse_args()
    todo = [
        c
        for c in cells(quick=args.quick)
        if (not args.release or c[0] in args.release)
        and (not args.step or c[1] in args.step)
        and (not args.fault or c[2] in args.fault)
    ]
    venv_bin = Path(sys.prefix) / "bin"
    results: list[CellResult] = []
    t0 = time.monotonic()
    with sandbox.booted(bind_ro=[ROOT, sys.prefix]) as box:
        for i, (release, step, fault) in enumerate(todo, 1):
            res = run_cell(box, venv_bin, release, step, fault)
            results.append(res)
            line = f"[{i}/{len(todo)}] {release:<4} {step:<22} {fault:<12} {res.cell():<16} status: {res.status_cell()}"
            print(line, file=sys.stderr, flush=True)
    print(table(results))
    broken = [r for r in results if r.problems()]
    reached = sum(r.reached for r in results)
    print(f"\n{len(results)} cells, {reached} reached, {len(broken)} broke an invariant, "
          f"{time.monotonic() - t0:.0f} s")  # fmt: skip
    for r in broken:
        print(f"- {r.release} / {r.step} / {r.fault}: {'; '.join(r.problems())}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
