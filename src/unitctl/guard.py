"""The guard: after a restart, watch the unit and its readiness URL until it is ready or clearly is not.

``decide`` is pure (unit state + probe answer + time -> verdict or keep watching); ``watch`` is the
loop around it with the clock, the sleep, the backend and the probe injected.

A systemd restart that "succeeded" proves little: Gunicorn sends READY=1 before its workers import
the app. So the guard waits for ``successes_needed`` consecutive 2xx answers, each given while the unit
is active and, where /proc can tell, holds a listening socket (an answer while it is still activating, or
while its Gunicorn retries a bind another service holds, comes from that other service, so it does not
count; the unit is read once more before "ready" is reported), and decides at once,
without waiting for the timeout, when systemd shows the release cannot become ready:

- ``unit-failed``   the unit is failed or no longer loaded
- ``main-exited``   the main process is gone (inactive, MainPID 0, sub-state exited/dead)
- ``restart-loop``  systemd restarted it behind our back (NRestarts rose, sub-state auto-restart,
                    a new InvocationID or MainPID since the restart we are guarding)

Why three successes by default: one 2xx can come from a worker that booted while its siblings
are still crashing on import (Gunicorn's master needs a moment to notice a worker exiting 3/4 and
halt); three answers spread over ``2 * interval`` (1 s by default) span that window, while a healthy
release still passes within about a second of being ready.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from unitctl.errors import UsageError
from unitctl.probe import ProbeResult
from unitctl.systemd.base import SystemdBackend, UnitState

Kind = Literal["ready", "unit-failed", "main-exited", "restart-loop", "timeout"]
DEFAULT_SUCCESSES = 3
DEFAULT_INTERVAL = 0.5


@dataclass(frozen=True)
class Baseline:
    """The unit as it was right after the restart being guarded."""

    invocation_id: str = ""
    n_restarts: int = 0
    main_pid: int = 0

    @classmethod
    def of(cls, state: UnitState) -> Baseline:
        """Take the baseline from a state read right after the restart."""
        return cls(state.invocation_id, state.n_restarts, state.main_pid)


@dataclass(frozen=True)
class GuardOutcome:
    """How the guard ended."""

    ready: bool
    kind: Kind
    reason: str  # one line naming the unit and what was seen
    elapsed: float
    probes: int  # probe requests made
    last_probe: ProbeResult | None = None
    last_state: UnitState | None = None


@dataclass(frozen=True)
class Progress:
    """What the guard knows between ticks (immutable; ``decide`` returns the next one)."""

    baseline: Baseline
    streak: int = 0  # consecutive 2xx answers
    probes: int = 0
    best_streak: int = 0
    non_ready: int = 0  # answers that were not ready
    unit_not_active: int = 0  # ready answers while the unit was not active (not counted as ready)
    not_listening: int = 0  # ready answers while the active unit listened on no socket (not counted either)
    last_probe: ProbeResult | None = None
    last_unit: str = ""  # the unit at the last probe: "active/running", "activating/start, not active", ...
    last_serving: bool = False  # whether the unit could have given the last answer (active, not deaf)


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: str

    @property
    def ready(self) -> bool:
        return self.kind == "ready"


def unit_verdict(state: UnitState, baseline: Baseline) -> Verdict | None:
    """Return the verdict that the unit's state alone forces, or None while it may still become ready."""
    name = state.name
    if state.load_state != "loaded":
        return Verdict("unit-failed", f"{name} is {state.load_state} (LoadState), not loaded")
    exit_text = _exit_text(state)
    if state.sub_state == "auto-restart":
        return Verdict("restart-loop", f"{name} is waiting to be restarted by systemd (auto-restart) after {exit_text}")
    if state.n_restarts > baseline.n_restarts:
        return Verdict(
            "restart-loop",
            f"{name} was restarted by systemd {state.n_restarts - baseline.n_restarts} time(s) "
            f"since the deploy (NRestarts {baseline.n_restarts} -> {state.n_restarts}); last {exit_text}",
        )
    if state.active_state == "failed":
        return Verdict("unit-failed", f"{name} failed: {exit_text}")
    if baseline.invocation_id and state.invocation_id and state.invocation_id != baseline.invocation_id:
        return Verdict(
            "restart-loop",
            f"{name} was started again (InvocationID changed from {baseline.invocation_id[:12]} "
            f"to {state.invocation_id[:12]}); the guarded release did not stay up",
        )
    if state.active_state in ("inactive", "deactivating"):
        return Verdict("main-exited", f"{name} is {state.active_state}/{state.sub_state}: {exit_text}")
    if state.active_state == "active" and (state.main_pid == 0 or state.sub_state in ("exited", "dead")):
        return Verdict(
            "main-exited",
            f"{name} is active/{state.sub_state} but its main process is gone (MainPID {state.main_pid}); {exit_text}",
        )
    if baseline.main_pid and state.main_pid and state.main_pid != baseline.main_pid:
        return Verdict(
            "restart-loop",
            f"{name}'s main process changed from PID {baseline.main_pid} to {state.main_pid}: "
            "it was restarted behind the guard",
        )
    return None


def _exit_text(state: UnitState) -> str:
    if state.result in ("", "success") and state.exec_main_status == 0:
        return "the main process exited cleanly"
    return f"Result={state.result}, ExecMainStatus={state.exec_main_status}"


def decide(
    progress: Progress,
    state: UnitState,
    probe: ProbeResult | None,
    *,
    elapsed: float,
    timeout: float,
    successes_needed: int = DEFAULT_SUCCESSES,
    listening: bool | None = None,
) -> tuple[Progress, Verdict | None]:
    """Fold one tick (unit state, probe answer if one was made, whether the unit listens) into the progress.

    Return the next progress and a verdict if decided. ``listening`` None means unknown, which does not block.
    """
    forced = unit_verdict(state, progress.baseline)
    if forced is not None:
        return progress, forced
    if probe is not None:
        active = state.active_state == "active"
        deaf = active and listening is False
        streak = progress.streak + 1 if probe.ok and active and not deaf else 0
        progress = replace(
            progress,
            streak=streak,
            probes=progress.probes + 1,
            best_streak=max(progress.best_streak, streak),
            non_ready=progress.non_ready + (0 if probe.ok else 1),
            unit_not_active=progress.unit_not_active + (1 if probe.ok and not active else 0),
            not_listening=progress.not_listening + (1 if probe.ok and deaf else 0),
            last_probe=probe,
            last_unit=f"{state.active_state}/{state.sub_state}"
            + ("" if active else ", not active")
            + (" but listens on no socket" if deaf else ""),
            last_serving=active and not deaf,
        )
        if streak >= successes_needed:
            return progress, Verdict(
                "ready", f"{state.name} is ready: {streak} consecutive ready answers ({probe.describe()})"
            )
    if elapsed >= timeout:
        return progress, Verdict("timeout", _timeout_reason(state.name, progress, timeout, successes_needed))
    return progress, None


def _timeout_reason(name: str, progress: Progress, timeout: float, needed: int) -> str:
    last = progress.last_probe
    head = f"{name} was not ready within {timeout:g}s: "
    if last is not None and last.ok and progress.last_unit and not progress.last_serving:
        # Say which half failed: the URL answered, the unit could not have.
        return (
            head + f"the URL answered ready ({last.describe()}) but {name} is {progress.last_unit}; "
            "is another service answering on that URL?"
        )
    text = head + (f"{name} is active but its URL is not ready, " if progress.last_serving else "")
    text += "last answer " + (last.describe() if last else "none (no probe answered)")
    if progress.best_streak and progress.non_ready:
        text += f"; flapping (best run {progress.best_streak}/{needed} ready answers, {progress.non_ready} not ready)"
    return text


def watch(
    backend: SystemdBackend,
    unit: str,
    probe: Callable[[], ProbeResult],
    *,
    timeout: float,
    interval: float = DEFAULT_INTERVAL,
    successes_needed: int = DEFAULT_SUCCESSES,
    baseline: Baseline | UnitState | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_tick: Callable[[float, float, ProbeResult | None], None] | None = None,
    listening: Callable[[int], bool | None] | None = None,
) -> GuardOutcome:
    """Watch ``unit`` and probe it until ready, failed, restart-looping or ``timeout`` seconds have passed.

    ``baseline`` is the unit right after the restart being guarded (default: read now). SystemdError
    from the backend propagates: the caller decides what a broken systemd connection means.
    ``listening(main_pid)`` tells whether the unit holds a listening socket (True/False/None: unknown); by
    default /proc is read when the backend's units run on this host (``backend.local``), else nothing is checked.
    """
    if timeout <= 0 or interval <= 0:
        raise UsageError(f"guard timeout and interval must be positive (got {timeout:g}s, {interval:g}s)")
    if successes_needed < 1:
        raise UsageError(f"the guard needs at least one ready answer (got {successes_needed})")
    started = clock()
    if baseline is None:
        baseline = Baseline.of(backend.state(unit))
    elif isinstance(baseline, UnitState):
        baseline = Baseline.of(baseline)
    if listening is None and getattr(backend, "local", False):
        from unitctl.listeners import unit_listens

        listening = unit_listens
    progress = Progress(baseline=baseline)
    while True:
        state = backend.state(unit)
        forced = unit_verdict(state, baseline)
        answer = None if forced is not None else probe()
        elapsed = clock() - started
        # Only a ready answer from an active unit needs the evidence that the unit serves at all.
        serves = None
        if listening is not None and answer is not None and answer.ok and state.active_state == "active":
            serves = listening(state.main_pid)
        progress, verdict = decide(
            progress,
            state,
            answer,
            elapsed=elapsed,
            timeout=timeout,
            successes_needed=successes_needed,
            listening=serves,
        )
        if on_tick is not None:
            on_tick(elapsed, timeout, progress.last_probe)
        if verdict is not None and verdict.ready:
            # The unit must still be active after its last ready answer: it may have failed while that answer
            # came from something else listening on the URL.
            state = backend.state(unit)
            forced = unit_verdict(state, baseline)
            if forced is not None:
                verdict = forced
            elif state.active_state != "active":
                unit_now = f"{state.active_state}/{state.sub_state}, not active"
                progress, verdict = replace(progress, streak=0, last_unit=unit_now, last_serving=False), None
        if verdict is not None:
            return GuardOutcome(
                ready=verdict.ready,
                kind=verdict.kind,
                reason=verdict.reason,
                elapsed=elapsed,
                probes=progress.probes,
                last_probe=progress.last_probe,
                last_state=state,
            )
        sleep(max(0.0, min(interval, timeout - elapsed)))
