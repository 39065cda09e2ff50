"""Fault injection against the real deploy engine: pause it at a step, hurt it, then check what is left.

The engine honours a test hook (see ``unitctl.deploy`` and docs/fault-matrix.md): with
``UNITCTL_FAULT_PAUSE=STEP`` and ``UNITCTL_FAULT_FILE=PATH`` in its environment it writes its PID to PATH
right before it performs STEP (its intent already journaled) and waits until PATH is removed. While it
waits, a cell delivers one fault:

- ``kill-9``: the process dies on the spot (OOM killer, power loss for the process's part);
- ``sighup``: the SSH session of a CI job drops with a terminal: SIGHUP, and stdout/stderr closed;
- ``pipes-closed``: the CI job is cancelled or loses its network without a terminal: stdout/stderr closed;
- ``sigterm``: a polite stop (systemd, a CI runner's cancel).

Then the cell reads the end state and asks the engine again, as a user coming back would: ``unitctl
status`` and the same ``unitctl apply``. The invariants every cell must keep are in ``CellResult.problems``:
the unit file is never torn, the checkout is at a known revision, nothing exits 0 while the readiness URL
fails, no traceback, no hang, no transient check unit left behind, and after the re-run the release that
should serve (the new one when it was good, the previous one when it was bad) serves and is ready.

Used by tests/integration/test_faults_real.py (asserts the invariants) and bench/fault_matrix.py (prints
the table quoted in docs/fault-matrix.md).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apphelpers import DeployedApp, http_get

from unitctl.deploy.model import STEPS
from unitctl.sandbox import Sandbox

# The engine's steps in order (its own list, so a new step gets its cells), but for those these deploys never
# perform: they deploy no .socket (test_socket_real.py kills a deploy at the socket steps).
NOT_PERFORMED = ("socket-write", "socket-enable", "socket-restart", "rollback-socket")
DEPLOY_STEPS = tuple(s for s in STEPS[: STEPS.index("post-ready") + 1] if s not in NOT_PERFORMED)
# Every hook point, so the hook steps (build, live-build, pre-switch, post-ready, the rollback's rebuild) have cells.
HOOK = "/bin/true"
ROLLBACK_STEPS = tuple(s for s in STEPS if s.startswith("rollback-") and s not in NOT_PERFORMED)
FAULTS = ("kill-9", "sighup", "pipes-closed", "sigterm")
# What `unitctl status` may call the faulted attempt, by the exit code it ended with (None: killed).
TRUE_OUTCOMES: dict[int | None, tuple[str, ...]] = {
    0: ("ok",),
    3: ("refused", "interrupted"),
    4: ("rolled-back", "interrupted"),
    5: ("rollback-failed",),
    None: ("interrupted",),
}
RELEASES = ("good", "bad")

# A bad release imports fine and then never becomes ready (its table is missing): only the guard catches it.
READY_TIMEOUT = 4.0
PROCESS_TIMEOUT = 120.0
PAUSE_TIMEOUT = 90.0


def steps_for(release: str) -> tuple[str, ...]:
    """Return the steps a deploy of ``release`` goes through (a bad release also rolls back).

    The bad release is deployed with --no-canary (a canary would refuse it before the switch, and the matrix is
    about the rollback under faults; test_canary_real.py covers the canary refusing it): it has no canary step,
    and never becomes ready, so no post-ready step either.
    """
    deploy = tuple(s for s in DEPLOY_STEPS if release == "good" or s not in ("canary", "post-ready"))
    return deploy + (ROLLBACK_STEPS if release == "bad" else ()) + ("record",)


def cells(quick: bool = False) -> list[tuple[str, str, str]]:
    """Return every (release, step, fault) cell; ``quick`` keeps one step per phase of the transaction."""
    quick_steps = {"canary", "unit-write", "guard", "rollback-restart"}
    out = []
    for release in RELEASES:
        for step in steps_for(release):
            if quick and step not in quick_steps:
                continue
            for fault in FAULTS:
                out.append((release, step, fault))
    return out


@dataclass
class CellResult:
    """What one fault left behind, and what the next commands said."""

    release: str
    step: str
    fault: str
    reached: bool = False  # the engine paused at the step (False: the deploy never performs it)
    exit_code: int | None = None  # of the faulted process; None when killed or hung
    hung: bool = False
    unit_state: str = ""  # "old", "new" or "TORN"
    head: str = ""  # "v1", "v2" or the unknown hash
    status_exit: int | None = None
    status_outcome: str = ""
    rerun_exit: int | None = None
    served_after_fault: str = ""
    ready_after_fault: bool = False
    served_final: str = ""
    ready_final: bool = False
    leftovers: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def expected_final(self) -> str:
        return "release v2" if self.release == "good" else "release v1"

    def problems(self) -> list[str]:
        """Return every broken invariant (empty when the cell passed)."""
        if not self.reached:
            return []
        out: list[str] = []
        if self.hung:
            out.append("the faulted unitctl hung")
        if self.unit_state == "TORN":
            out.append("the unit file is neither the old nor the new one")
        if self.head not in ("v1", "v2"):
            out.append(f"the checkout is at an unknown revision {self.head}")
        if self.exit_code == 0 and not self.ready_after_fault:
            out.append("the faulted unitctl exited 0 while the readiness URL failed")
        if self.exit_code == 0 and self.release == "bad":
            out.append("the faulted unitctl exited 0 for a release that is never ready")
        if self.rerun_exit == 0 and not self.ready_final:
            out.append("the re-run exited 0 while the readiness URL failed")
        if self.rerun_exit == 0 and self.release == "bad":
            out.append("the re-run exited 0 for a release that is never ready")
        if self.served_final != self.expected_final or not self.ready_final:
            out.append(f"after the re-run {self.served_final!r} serves (ready: {self.ready_final}), "
                       f"expected {self.expected_final!r} ready")  # fmt: skip
        if self.status_exit not in (0, None):
            out.append(f"unitctl status exited {self.status_exit}")
        if not self.hung and self.status_outcome not in self.allowed_outcomes():
            out.append(
                f"unitctl status calls the attempt {self.status_outcome!r}, expected one of {self.allowed_outcomes()}"
            )
        if self.leftovers:
            out.append(f"transient units left behind: {', '.join(self.leftovers)}")
        if self.tracebacks:
            out.append(f"traceback in {', '.join(self.tracebacks)}")
        return out

    def allowed_outcomes(self) -> tuple[str, ...]:
        """Return the outcomes ``unitctl status`` may truthfully show for the faulted attempt."""
        if self.step == "lock" and self.fault in ("kill-9", "sigterm"):
            # Stopped before it took the lock: no attempt began, so status still shows the one before it.
            return ("", "ok")
        if self.fault == "kill-9" and self.step == "record":
            # Killed after its outcome was decided: the next command records that outcome.
            return ("ok", "rolled-back", "interrupted")
        return tuple(TRUE_OUTCOMES.get(self.exit_code, ()))

    def cell(self) -> str:
        """Return the table cell: faulted exit → re-run exit → what serves; '-' when the step never happens."""
        if not self.reached:
            return "-"
        first = "hang" if self.hung else ("killed" if self.exit_code is None else str(self.exit_code))
        served = self.served_final.removeprefix("release ") if self.served_final.startswith("release ") else "DOWN"
        mark = "" if not self.problems() else " !"
        return f"{first}→{self.rerun_exit}→{served}{mark}"

    def status_cell(self) -> str:
        """Return what ``unitctl status`` said of the faulted attempt, for the progress lines."""
        return self.status_outcome or "(no attempt)"


class FaultApp(DeployedApp):
    """One app for one cell: v1 deployed, v2 (good or bad) committed on branch ``next`` with a changed unit."""

    def __init__(self, box: Sandbox, venv_bin: Path, release: str) -> None:
        super().__init__(box, venv_bin, prefix="fault")
        self.release = release
        self.pause_file = f"{self.repo.root}/pause"
        self.v1 = self.repo.release("v1")
        self.old_unit = self.repo.unit(venv_bin, port=self.port, workers=2).encode()
        self.new_unit = self.repo.unit(venv_bin, port=self.port, workers=3).encode()
        self.box.write_file(f"{self.repo.root}/units/old/{self.unit}", self.old_unit)
        self.box.write_file(f"{self.repo.root}/units/new/{self.unit}", self.new_unit)
        first = self.unitctl("apply", *self.apply_args(unit="old", rev=None), timeout=PROCESS_TIMEOUT)
        if first.returncode != 0:
            raise AssertionError(f"the first deploy of v1 failed: {first.stderr}")
        self.repo.git("checkout", "-q", "-b", "next")
        self.v2 = self.repo.release("v2", table="items" if release == "good" else "items_v2")
        self.repo.git("checkout", "-q", "main")

    def apply_args(self, *, unit: str = "new", rev: str | None = "next") -> list[str]:
        return [
            self.name, "--guarded", "--repo", self.repo.path, "--ready-url", f"{self.url}/health/ready",
            "--ready-timeout", str(READY_TIMEOUT), "--ready-interval", "0.2", "--history-dir", self.hist,
            "--unit-file", f"{self.repo.root}/units/{unit}/{self.unit}", *(["--rev", rev] if rev else []),
            *(["--no-canary"] if self.release == "bad" else []),
            "--build-cmd", HOOK, "--pre-switch-cmd", HOOK, "--post-ready-cmd", HOOK,
        ]  # fmt: skip

    def revision_name(self) -> str:
        head = self.repo.head()
        return {self.v1: "v1", self.v2: "v2"}.get(head, head[:12])

    def unit_state(self) -> str:
        try:
            data = self.box.read_file(self.unit_path)
        except FileNotFoundError:
            return "MISSING"
        return {self.old_unit: "old", self.new_unit: "new"}.get(data, "TORN")

    def served(self) -> tuple[str, bool]:
        status, body = http_get(self.box, f"{self.url}/")
        served = body.strip() if status == 200 else f"HTTP {status}"
        return served, http_get(self.box, f"{self.url}/health/ready")[0] == 200

    def transient_leftovers(self) -> list[str]:
        """Return the check and canary units left behind, and any canary worktree beside the checkout."""
        out = self.box.systemctl("list-units", "--all", "--plain", "--no-legend", "unitctl-*").stdout
        units = [line.split()[0] for line in out.splitlines() if line.strip()]
        trees = self.repo.git("worktree", "list", "--porcelain").stdout.splitlines()
        return units + [t for t in trees if t.startswith("worktree ") and t != f"worktree {self.repo.path}"]

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.box.systemctl("stop", self.unit, timeout=60)
            self.box.systemctl("reset-failed", self.unit)
            self.box.run(["rm", "-rf", self.unit_path, f"{self.unit_path}.d"])
            self.box.systemctl("daemon-reload")


def _deliver(box: Sandbox, proc: Any, fault: str, pid: int) -> None:
    if fault in ("sighup", "pipes-closed"):
        # The reading end of the SSH channel is gone: every later write of unitctl meets a closed pipe.
        for stream in (proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()
    signal_name = {"kill-9": "KILL", "sighup": "HUP", "sigterm": "TERM"}.get(fault)
    if signal_name:
        box.run(["kill", f"-{signal_name}", str(pid)], check=True)


def run_cell(box: Sandbox, venv_bin: Path, release: str, step: str, fault: str) -> CellResult:
    """Deploy v2 with the engine paused at ``step``, deliver ``fault``, then check and re-run."""
    app = FaultApp(box, venv_bin, release)
    res = CellResult(release, step, fault)
    try:
        _fault_and_check(app, res, step, fault)
    finally:
        app.cleanup()
    return res


def _fault_and_check(app: FaultApp, res: CellResult, step: str, fault: str) -> None:
    box = app.box
    pause_host = box.host_path(app.pause_file)
    env = {"UNITCTL_FAULT_PAUSE": step, "UNITCTL_FAULT_FILE": app.pause_file}
    proc = box.popen(app.unitctl_argv("apply", *app.apply_args()), env=env)
    deadline = time.monotonic() + PAUSE_TIMEOUT
    pid = 0
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            text = pause_host.read_text().strip()
            if text:
                pid = int(text)
                break
        time.sleep(0.05)
    if pid == 0:
        # The deploy finished (or failed) without ever performing this step: the cell does not apply.
        out, err = proc.communicate(timeout=PROCESS_TIMEOUT)
        res.notes.append(f"step not reached, exit {proc.returncode}")
        if "Traceback" in err:
            res.tracebacks.append("the unfaulted apply")
        return
    res.reached = True
    _deliver(box, proc, fault, pid)
    pause_host.unlink(missing_ok=True)
    stderr_text = ""
    try:
        if fault in ("sighup", "pipes-closed"):
            code = proc.wait(timeout=PROCESS_TIMEOUT)
        else:
            _out, stderr_text = proc.communicate(timeout=PROCESS_TIMEOUT)
            code = proc.returncode
        res.exit_code = None if fault == "kill-9" else code
    except Exception:
        res.hung = True
        with contextlib.suppress(Exception):
            box.run(["kill", "-KILL", str(pid)])
        proc.kill()
        proc.wait(timeout=30)
    if "Traceback" in stderr_text:
        res.tracebacks.append("the faulted apply")
    res.unit_state = app.unit_state()
    res.head = app.revision_name()
    res.served_after_fault, res.ready_after_fault = app.served()
    status = app.unitctl("status", app.name, "--history-dir", app.hist, "--json", timeout=PROCESS_TIMEOUT)
    res.status_exit = status.returncode
    if "Traceback" in status.stderr:
        res.tracebacks.append("status")
    with contextlib.suppress(ValueError, TypeError):
        data: dict[str, Any] = json.loads(status.stdout).get("result") or {}
        res.status_outcome = str(data.get("last_outcome") or data.get("outcome") or "")
    rerun = app.unitctl("apply", *app.apply_args(), timeout=PROCESS_TIMEOUT)
    res.rerun_exit = rerun.returncode
    if "Traceback" in rerun.stderr:
        res.tracebacks.append("the re-run")
    res.served_final, res.ready_final = app.served()
    res.leftovers = app.transient_leftovers()
    res.notes.append(f"re-run: {rerun.stderr.strip().splitlines()[-1] if rerun.stderr.strip() else ''}")


def table(results: list[CellResult]) -> str:
    """Return the fault × step table (one per release) in Markdown."""
    lines: list[str] = []
    for release in RELEASES:
        rows = [r for r in results if r.release == release]
        if not rows:
            continue
        lines.append(f"\n**{release} release** (faulted exit → exit of the same apply re-run → release serving)\n")
        lines.append("| step | " + " | ".join(FAULTS) + " |")
        lines.append("|---|" + "---|" * len(FAULTS))
        for step in steps_for(release):
            by_fault = {r.fault: r for r in rows if r.step == step}
            if not by_fault:
                continue
            cells_ = [by_fault[f].cell() if f in by_fault else "" for f in FAULTS]
            lines.append(f"| {step} | " + " | ".join(cells_) + " |")
    return "\n".join(lines)
