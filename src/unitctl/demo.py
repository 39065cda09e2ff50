"""The main job, end to end, with no server to set up: ``bash scripts/demo.sh``.

Boots a throwaway systemd (unitctl.sandbox), builds the example app's releases in it (an origin with
every release, the server's checkout cloned at v1), then deploys, exactly as the GitHub workflow does on
a server, with update_systemd_unit.sh, i.e. unitctl deploy (fetch + exact commit + guarded apply):

    v1                first deploy: the unit is rewritten (no --preload, 2 workers) and installed
    v2                a good release
    v3-broken-import  refused by the pre-import check (exit 3); v2 keeps serving, never restarted
    v4-db-down        its canary is never ready: refused (exit 3); v2 keeps serving, never restarted

After each: the phases with their timings, the exit code and the release the app serves. Ends with a
table and exit 0 only if every step did what it should; the sandbox is torn down on every way out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from unitctl.errors import SandboxError, UnitctlError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "update_systemd_unit.sh"
MAKE_RELEASES = REPO_ROOT / "examples" / "app" / "make_releases.py"
BASE = "/srv/demo"
NAME = "demoapp"
PORT = 8000
DB_URL = f"sqlite:///{BASE}/data/app.db"


@dataclass(frozen=True)
class Step:
    """One deploy of the demo and what it must do."""

    tag: str
    expect_exit: int
    expect_serving: str
    what: str


DEMO_STEPS = (
    Step("v1", 0, "v1", "first deploy"),
    Step("v2", 0, "v2", "a good release"),
    Step("v3-broken-import", 3, "v2", "broken import: refused before the restart"),
    Step("v4-db-down", 3, "v2", "database down: refused by its canary, the live service never touched"),
)


@dataclass(frozen=True)
class StepOutcome:
    """What a step did."""

    step: Step
    exit_code: int
    serving: str
    seconds: float
    restarted: bool

    @property
    def ok(self) -> bool:
        """Return whether the step did what it should (a refusal must also leave the service running untouched)."""
        if self.exit_code != self.step.expect_exit or self.serving != self.step.expect_serving:
            return False
        return not (self.step.expect_exit == 3 and self.restarted)


def table(outcomes: Sequence[StepOutcome]) -> list[str]:
    """Return the final table, one line per step."""
    rows = [("release", "expected", "exit", "serving after", "time", "result")]
    for o in outcomes:
        expected = f"exit {o.step.expect_exit}, serves {o.step.expect_serving}"
        rows.append(
            (o.step.tag, expected, str(o.exit_code), o.serving, f"{o.seconds:.1f}s", "ok" if o.ok else "UNEXPECTED")
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


class Demo:
    """Runs the steps inside a booted sandbox and prints as it goes."""

    def __init__(self, box: object, *, out: TextIO, ready_timeout: float, workers: str) -> None:
        from unitctl.sandbox import Sandbox

        assert isinstance(box, Sandbox)
        self.box = box
        self.out = out
        self.ready_timeout = ready_timeout
        self.workers = workers
        self.python = f"{sys.prefix}/bin/python"

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def build(self) -> dict[str, str]:
        """Build the releases (origin + checkout at v1) and the database; return tag → commit."""
        r = self.box.run(
            [
                self.python, str(MAKE_RELEASES), f"{BASE}/app", "--origin", f"{BASE}/origin", "--json",
                "--unit-out", f"{BASE}/{NAME}.service", "--venv", sys.prefix, "--port", str(PORT),
                "--database-url", DB_URL,
            ],
            check=True,
        )  # fmt: skip
        revs = {rel["tag"]: rel["rev"] for rel in json.loads(r.stdout)["releases"]}
        self.box.run([self.python, f"{BASE}/app/initdb.py"], env={"DATABASE_URL": DB_URL}, check=True)
        return revs

    def serving(self) -> str:
        """Ask the app inside the container which release answers ``/``."""
        code = (
            "import json, urllib.request\n"
            f"print(json.load(urllib.request.urlopen('http://127.0.0.1:{PORT}/', timeout=5))['release'])"
        )
        r = self.box.run([self.python, "-c", code], timeout=30)
        return r.stdout.strip() if r.ok else "nothing"

    def main_pid(self) -> str:
        return self.box.unit_properties(f"{NAME}.service", "MainPID").get("MainPID", "0")

    def deploy(self, step: Step, rev: str, *, first: bool) -> StepOutcome:
        """Run update_systemd_unit.sh for one release; print its phases, exit code and what serves after."""
        self.say(f"\n== {step.tag}: {step.what} (commit {rev[:12]})")
        argv = [
            "bash", str(SCRIPT), NAME, "--repo", f"{BASE}/app", "--fetch", "--rev", rev,
            "--ready-url", f"http://127.0.0.1:{PORT}/health/ready", "--ready-timeout", f"{self.ready_timeout:g}",
            "--workers", self.workers, "--unitctl", f"{sys.prefix}/bin/unitctl", f"--history-dir={BASE}/history",
        ]  # fmt: skip
        if first:
            argv += ["--unit-file", f"{BASE}/{NAME}.service"]
        pid_before = self.main_pid()
        t0 = time.monotonic()
        r = self.box.run(argv, timeout=self.ready_timeout * 2 + 120)
        seconds = time.monotonic() - t0
        for line in (r.stderr + r.stdout).splitlines():
            # The phase lines and the one-line verdict; the rewrite's diff only on the first deploy.
            if line.startswith(("unitctl: ", "unitctl deploy: ", "update_systemd_unit.sh: ")) or (
                first and line[:1] in "+-@" and line.strip()
            ):
                self.say(f"   {line}")
            elif line.startswith(f"{NAME}.service: "):
                self.say(f"   {line}")
        serving = self.serving()
        restarted = pid_before != "0" and self.main_pid() != pid_before
        outcome = StepOutcome(step, r.returncode, serving, seconds, restarted)
        verdict = "as expected" if outcome.ok else f"UNEXPECTED (wanted exit {step.expect_exit}, {step.expect_serving})"
        self.say(f"   -> exit {r.returncode}, serving {serving}, {seconds:.1f}s: {verdict}")
        return outcome


def run(*, out: TextIO, ready_timeout: float, workers: str) -> int:
    """Boot the sandbox, run every step, print the table; return the exit code."""
    from unitctl import sandbox

    for path in (SCRIPT, MAKE_RELEASES):
        if not path.exists():
            raise SandboxError(f"{path} is missing: the demo runs from a unitctl checkout", hint="git clone it first")
    outcomes: list[StepOutcome] = []
    t0 = time.monotonic()
    out.write("unitctl demo: booting a throwaway systemd (systemd-nspawn over an overlay of /)...\n")
    out.flush()
    with sandbox.booted(bind_ro=[REPO_ROOT, sys.prefix]) as box:
        name = box.name
        demo = Demo(box, out=out, ready_timeout=ready_timeout, workers=workers)
        demo.say(f"   sandbox {name} booted in {time.monotonic() - t0:.1f}s")
        t1 = time.monotonic()
        revs = demo.build()
        demo.say(f"   built the example app's releases in {BASE}/origin, checkout {BASE}/app at v1, database")
        demo.say(f"   ({', '.join(revs)}) in {time.monotonic() - t1:.1f}s")
        for i, step in enumerate(DEMO_STEPS):
            outcomes.append(demo.deploy(step, revs[step.tag], first=i == 0))
        status = box.run([f"{sys.prefix}/bin/unitctl", "status", NAME, f"--history-dir={BASE}/history"], timeout=60)
        demo.say("\n== unitctl status demoapp")
        for line in status.stdout.splitlines():
            demo.say(f"   {line}")
        demo.say("\n   tearing the sandbox down...")
    # Other sandboxes (a test run beside the demo) are not ours to judge.
    left = [item for item in sandbox.leftovers() if name in item]
    out.write("\n" + "\n".join(table(outcomes)) + "\n")
    good = all(o.ok for o in outcomes) and len(outcomes) == len(DEMO_STEPS) and not left
    if left:
        out.write(f"\nthe sandbox left things behind: {left}\n")
    out.write(
        f"\n{'OK' if good else 'FAILED'}: {sum(o.ok for o in outcomes)}/{len(DEMO_STEPS)} steps as expected; "
        f"{'the app ends serving the last good release' if good else 'see above'} "
        f"({time.monotonic() - t0:.0f}s in all)\n"
    )
    return 0 if good else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run the demo; one line on stderr and the error's exit code on failure."""
    parser = argparse.ArgumentParser(prog="python -m unitctl.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ready-timeout", type=float, default=10.0, help="seconds each deploy waits for readiness [10]"
    )
    parser.add_argument("--workers", default="2", help="Gunicorn workers the unit is rewritten to [2]")
    args = parser.parse_args(argv)
    if args.ready_timeout <= 0:
        parser.error("--ready-timeout must be positive")
    try:
        return run(out=sys.stdout, ready_timeout=args.ready_timeout, workers=args.workers)
    except KeyboardInterrupt:
        print("\nunitctl demo: interrupted; the sandbox was torn down", file=sys.stderr)
        return 130
    except UnitctlError as err:
        print(f"unitctl demo: error: {err}", file=sys.stderr)
        return int(err.exit_code)


if __name__ == "__main__":
    sys.exit(main())
