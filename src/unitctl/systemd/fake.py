"""An in-memory systemd for unit tests: scriptable unit states, recorded calls, no processes.

    fake = FakeSystemd()
    fake.add_unit("app.service")                       # loaded, active/running, MainPID 100
    fake.script_states("app.service", [crashed, crashed])   # what the next state() calls return
    fake.fail_next("restart", "app.service", "Job for app.service failed")
    backend.restart("app.service")                     # raises SystemdError, recorded in fake.calls

It enforces what the real backends enforce (unit names validated, unknown units refused for
operations that need a loaded unit) so tests written against it hold for the real ones.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from unitctl.errors import SystemdError
from unitctl.systemd.base import (
    TransientResult,
    TransientSpec,
    UnitState,
    check_transient_prefix,
    transient_name,
)
from unitctl.unitname import validate_unit_name

Call = tuple[str, ...]


UNIT_DIR = "/etc/systemd/system"


def running_state(
    name: str, *, main_pid: int = 100, n_restarts: int = 0, invocation_id: str = "", unit_dir: str = UNIT_DIR
) -> UnitState:
    """Return the state of a healthy, running service loaded from ``unit_dir``."""
    return UnitState(
        name=name,
        load_state="loaded",
        active_state="active",
        sub_state="running",
        main_pid=main_pid,
        n_restarts=n_restarts,
        invocation_id=invocation_id or uuid.uuid4().hex,
        fragment_path=f"{unit_dir}/{name}",
        unit_file_state="static",
    )


def failed_state(
    name: str, *, status: int = 1, result: str = "exit-code", invocation_id: str = "", unit_dir: str = UNIT_DIR
) -> UnitState:
    """Return the state of a service loaded from ``unit_dir`` whose main process exited non-zero."""
    return UnitState(
        name=name,
        load_state="loaded",
        active_state="failed",
        sub_state="failed",
        main_pid=0,
        result=result,
        exec_main_status=status,
        invocation_id=invocation_id,
        fragment_path=f"{unit_dir}/{name}",
    )


def absent_state(name: str) -> UnitState:
    """Return the state of a unit systemd knows nothing of (no file, no process): a first deploy's."""
    return UnitState(name=name, load_state="not-found", active_state="inactive", sub_state="dead")


class FakeSystemd:
    """A SystemdBackend whose answers are scripted and whose calls are recorded in ``calls``."""

    name = "fake"
    local = False  # its units' pids are made up: never look them up in /proc

    def __init__(self, unit_dir: str = UNIT_DIR) -> None:
        # Where its units' files are (FragmentPath): a test's own unit directory, so unitpath sees them there.
        self.unit_dir = unit_dir
        self.calls: list[Call] = []
        self.units: dict[str, UnitState] = {}
        self._scripted: dict[str, deque[UnitState]] = {}
        self._failures: dict[tuple[str, str], deque[str]] = {}
        self._journal: dict[str, list[tuple[str, str]]] = {}
        self._transient: deque[TransientResult | Callable[[TransientSpec], TransientResult]] = deque()
        self._after_restart: dict[str, list[UnitState]] = {}
        self._next_pid = 1000
        self.started_specs: list[TransientSpec] = []  # start_transient() calls, in order
        self.leftover_transients: set[str] = set()  # check units a killed run left behind
        self._pids: dict[str, deque[set[int] | None]] = {}
        self.enabled: set[str] = set()  # units enable() linked into their [Install] targets
        # Answers every run_transient() nothing was scripted for (None: exit 0, no output), e.g. runs a hook here.
        self.on_transient: Callable[[TransientSpec], TransientResult] | None = None
        self.transient_specs: list[TransientSpec] = []  # run_transient() calls, in order

    # -- scripting -------------------------------------------------------------------------------

    def add_unit(self, unit: str, state: UnitState | None = None) -> UnitState:
        """Install ``unit`` (running and healthy unless ``state`` says otherwise)."""
        unit = validate_unit_name(unit)
        self.units[unit] = state or running_state(unit, main_pid=self._pid(), unit_dir=self.unit_dir)
        return self.units[unit]

    def script_states(self, unit: str, states: Iterable[UnitState]) -> None:
        """Make the next state() calls return ``states`` in order; the last one then sticks."""
        unit = validate_unit_name(unit)
        self._scripted.setdefault(unit, deque()).extend(states)

    def on_restart(self, unit: str, states: Sequence[UnitState]) -> None:
        """After the next successful restart()/start(), script ``states`` instead of a healthy run."""
        self._after_restart[validate_unit_name(unit)] = list(states)

    def script_pids(self, unit: str, answers: Iterable[set[int] | None]) -> None:
        """Answer ``unit_pids(unit)`` with these, in turn; the last one stays (default: the main PID, if any)."""
        self._pids[validate_unit_name(unit)] = deque(answers)

    def fail_next(self, op: str, unit: str, message: str) -> None:
        """Make the next ``op`` (e.g. "restart") on ``unit`` raise SystemdError(message); "*" for any unit."""
        key = (op, unit if unit == "*" else validate_unit_name(unit))
        self._failures.setdefault(key, deque()).append(message)

    def add_journal(self, unit: str, lines: Iterable[str], *, invocation_id: str = "") -> None:
        """Append journal lines for ``unit`` (tagged with ``invocation_id``, default: the current one)."""
        unit = validate_unit_name(unit)
        inv = invocation_id or (self.units[unit].invocation_id if unit in self.units else "")
        self._journal.setdefault(unit, []).extend((inv, line) for line in lines)

    def script_transient(self, result: TransientResult | Callable[[TransientSpec], TransientResult]) -> None:
        """Queue what the next run_transient() returns (or a function computing it from the spec)."""
        self._transient.append(result)

    def ops(self, unit: str | None = None) -> list[str]:
        """Return the recorded operation names, optionally only those on ``unit``."""
        return [c[0] for c in self.calls if unit is None or (len(c) > 1 and c[1] == unit)]

    # -- the protocol ----------------------------------------------------------------------------

    def daemon_reload(self) -> None:
        self.calls.append(("daemon_reload",))
        self._maybe_fail("daemon_reload", "*")
        self.units = {n: dataclasses.replace(s, need_daemon_reload=False) for n, s in self.units.items()}

    def start(self, unit: str) -> None:
        unit = self._op("start", unit)
        current = self.units[unit]
        if current.is_active:
            return
        self._begin(unit, n_restarts=0)

    def stop(self, unit: str) -> None:
        unit = self._op("stop", unit)
        current = self.units[unit]
        self.units[unit] = dataclasses.replace(
            current, active_state="inactive", sub_state="dead", main_pid=0, result="success"
        )
        self._scripted.pop(unit, None)

    def restart(self, unit: str) -> None:
        unit = self._op("restart", unit)
        # A manual restart resets NRestarts, as systemd does (flush_n_restarts).
        self._begin(unit, n_restarts=0)

    def reload(self, unit: str) -> None:
        unit = self._op("reload", unit)
        if not self.units[unit].is_active:
            raise SystemdError(f"reload of {unit} failed: unit is not active, cannot reload")

    def reset_failed(self, unit: str) -> None:
        unit = self._op("reset_failed", unit, need_loaded=False)
        if unit in self.units and self.units[unit].active_state == "failed":
            self.units[unit] = dataclasses.replace(
                self.units[unit], active_state="inactive", sub_state="dead", result="success", n_restarts=0
            )

    def enable(self, unit: str) -> None:
        unit = self._op("enable", unit, need_loaded=False)
        self.enabled.add(unit)

    def disable(self, unit: str) -> None:
        unit = self._op("disable", unit, need_loaded=False)
        self.enabled.discard(unit)

    def state(self, unit: str) -> UnitState:
        unit = validate_unit_name(unit)
        self.calls.append(("state", unit))
        queue = self._scripted.get(unit)
        if queue:
            self.units[unit] = queue.popleft()
        if unit not in self.units:
            return absent_state(unit)
        return self.units[unit]

    def run_transient(self, spec: TransientSpec) -> TransientResult:
        self.calls.append(("run_transient", *spec.argv))
        self._maybe_fail("run_transient", "*")
        if not spec.argv:
            raise SystemdError("run_transient needs a command")
        self.transient_specs.append(spec)
        if not self._transient:
            return TransientResult(returncode=0, output="") if self.on_transient is None else self.on_transient(spec)
        item = self._transient.popleft()
        return item(spec) if callable(item) else item

    def start_transient(self, spec: TransientSpec) -> str:
        """Start ``spec.unit_name``: it runs (or takes the states scripted for it) until stopped."""
        name = transient_name(spec)
        self.calls.append(("start_transient", name, *spec.argv))
        self._maybe_fail("start_transient", name)
        self.started_specs.append(spec)
        self.leftover_transients.add(name)
        self.units.setdefault(name, absent_state(name))
        self._begin(name, n_restarts=0)
        return name

    def remove_transient_units(self, prefix: str) -> list[str]:
        check_transient_prefix(prefix)
        gone = sorted(n for n in self.leftover_transients if n.startswith(prefix))
        for name in gone:
            self.units.pop(name, None)
        if gone:
            self.calls.append(("remove_transient_units", prefix))
        self.leftover_transients -= set(gone)
        return gone

    def unit_pids(self, unit: str) -> set[int] | None:
        unit = validate_unit_name(unit)
        self.calls.append(("unit_pids", unit))
        queue = self._pids.get(unit)
        if queue:
            answer = queue.popleft() if len(queue) > 1 else queue[0]
            return None if answer is None else set(answer)
        state = self.units.get(unit)
        return {state.main_pid} if state is not None and state.main_pid else set()

    def journal(self, unit: str, *, invocation_id: str | None = None, lines: int = 50) -> list[str]:
        unit = validate_unit_name(unit)
        self.calls.append(("journal", unit))
        entries = self._journal.get(unit, [])
        picked = [line for inv, line in entries if invocation_id is None or inv == invocation_id]
        return picked[-lines:] if lines > 0 else []

    # -- internals -------------------------------------------------------------------------------

    def _pid(self) -> int:
        self._next_pid += 1
        return self._next_pid

    def _op(self, op: str, unit: str, *, need_loaded: bool = True) -> str:
        unit = validate_unit_name(unit)
        self.calls.append((op, unit))
        self._maybe_fail(op, unit)
        if need_loaded and unit not in self.units:
            raise SystemdError(f"{op} of {unit} failed: Unit {unit} not found.")
        return unit

    def _maybe_fail(self, op: str, unit: str) -> None:
        for key in ((op, unit), (op, "*")):
            queue = self._failures.get(key)
            if queue:
                raise SystemdError(queue.popleft())

    def _begin(self, unit: str, *, n_restarts: int) -> None:
        self._scripted.pop(unit, None)
        after = self._after_restart.pop(unit, None)
        inv = uuid.uuid4().hex
        if after:
            # Scripted outcomes of this start share its new invocation unless they name their own.
            states = [s if s.invocation_id else dataclasses.replace(s, invocation_id=inv) for s in after]
            self.units[unit] = states[0]
            self._scripted[unit] = deque(states[1:])
            return
        # A restart changes the process, never where systemd reads the unit from.
        before = self.units[unit]
        self.units[unit] = dataclasses.replace(
            running_state(unit, main_pid=self._pid(), n_restarts=n_restarts, invocation_id=inv, unit_dir=self.unit_dir),
            fragment_path=before.fragment_path,
            dropin_paths=before.dropin_paths,
            unit_file_state=before.unit_file_state,
        )
