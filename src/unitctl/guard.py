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

- ``not-ready``     the release answers, but ``fail_after`` consecutive answers were HTTP non-2xx (the early
                    verdict: a release that answers 503 is not waited on until the timeout). Connection refused
                    and timeouts never count toward it (a restarted Gunicorn may still be binding), a 2xx starts
                    the count again.

Why three successes by default: one 2xx can come from a worker that booted while its siblings
are still crashing on import (Gunicorn's master needs a moment to notice a worker exiting 3/4 and
halt); three answers spread over ``2 * interval`` (1 s by default) span that window, while a healthy
release still passes within about a second of being ready.

Which release answered (attribution after a reload). A restart replaces every process of the unit, so any
answer while it is active and listening comes from the new release. A reload (``systemctl reload``, Gunicorn's
HUP) returns at once: the master stays, spawns new workers and stops the old ones gracefully, so for a while the
old workers still answer, and their 2xx would vouch for a release that never answered itself. So the caller reads
the PIDs in the unit's cgroup right before the HUP (``old_pids``: the master and its workers), and after it an
answer counts (toward ready or toward the early verdict) only once every one of those PIDs except the master has
left the cgroup (``old_present`` False; a PID seen gone stays gone). Answers before that are counted apart and
never make a release ready, not ready or "flapping". When the cgroup cannot be read (``old_pids`` None, or a
read fails: ``old_present`` None) every answer counts, as before, and the caller says so. Old workers that never
leave (stuck in Gunicorn's graceful timeout) end in ``timeout`` with that reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Literal

from unitctl.errors import UsageError
from unitctl.probe import ProbeResult
from unitctl.systemd.base import SystemdBackend, UnitState

VerdictKind = Literal["ready", "unit-failed", "main-exited", "restart-loop", "not-ready", "timeout"]
DEFAULT_SUCCESSES = 3
DEFAULT_INTERVAL = 0.5
# Consecutive HTTP non-2xx answers from the new release that fail it at once: 5 s at the default interval.
DEFAULT_FAIL_AFTER = 10


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
    kind: VerdictKind
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
    failing: int = 0  # consecutive HTTP non-2xx answers from the new release (connection errors skipped)
    old_answers: int = 0  # answers while the workers from before a reload were still in the cgroup (not counted)
    old_present: bool | None = False  # at the last tick: True, False, or None when the cgroup could not be read


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
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


@dataclass(frozen=True)
class Tick:
    """What one tick of the guard saw: the unit, the probe's answer if one was made, and the cgroup's evidence.

    ``listening`` None means unknown, which does not block. ``old_present``: whether workers from before a reload
    are still in the cgroup (True: the answer may be theirs and does not count; None: unknown, it counts).
    """

    state: UnitState
    probe: ProbeResult | None
    elapsed: float
    listening: bool | None = None
    old_present: bool | None = False


def decide(
    progress: Progress,
    tick: Tick,
    *,
    timeout: float,
    successes_needed: int = DEFAULT_SUCCESSES,
    fail_after: int = DEFAULT_FAIL_AFTER,
) -> tuple[Progress, Verdict | None]:
    """Fold one tick into the progress; return the next progress and a verdict if decided.

    ``fail_after`` 0 turns the early verdict off.
    """
    state, probe, elapsed = tick.state, tick.probe, tick.elapsed
    listening, old_present = tick.listening, tick.old_present
    forced = unit_verdict(state, progress.baseline)
    if forced is not None:
        return progress, forced
    progress = replace(progress, old_present=old_present)
    if probe is not None and old_present:
        progress = replace(progress, streak=0, probes=progress.probes + 1, old_answers=progress.old_answers + 1,
                           last_probe=probe)  # fmt: skip
    elif probe is not None:
        active = state.active_state == "active"
        deaf = active and listening is False
        serving = active and not deaf
        streak = progress.streak + 1 if probe.ok and serving else 0
        failing = progress.failing
        if probe.ok:
            failing = 0
        elif probe.status_code is not None and serving:
            failing += 1  # an HTTP answer that is not ready; a refused connection or a timeout does not count
        progress = replace(
            progress,
            streak=streak,
            failing=failing,
            probes=progress.probes + 1,
            best_streak=max(progress.best_streak, streak),
            non_ready=progress.non_ready + (0 if probe.ok else 1),
            unit_not_active=progress.unit_not_active + (1 if probe.ok and not active else 0),
            not_listening=progress.not_listening + (1 if probe.ok and deaf else 0),
            last_probe=probe,
            last_unit=f"{state.active_state}/{state.sub_state}"
            + ("" if active else ", not active")
            + (" but listens on no socket" if deaf else ""),
            last_serving=serving,
        )
        if streak >= successes_needed:
            return progress, Verdict(
                "ready", f"{state.name} is ready: {streak} consecutive ready answers ({probe.describe()})"
            )
        if fail_after > 0 and failing >= fail_after:
            return progress, Verdict(
                "not-ready",
                f"{state.name} is not ready: {failing} consecutive not-ready answers from the new release "
                f"(--fail-after {fail_after}), the last {probe.describe()}",
            )
    if elapsed >= timeout:
        return progress, Verdict("timeout", _timeout_reason(state.name, progress, timeout, successes_needed))
    return progress, None


def _timeout_reason(name: str, progress: Progress, timeout: float, needed: int) -> str:
    last = progress.last_probe
    head = f"{name} was not ready within {timeout:g}s: "
    if progress.old_present:
        return head + (
            f"the workers from before the reload never left {name}'s cgroup (stuck in Gunicorn's graceful "
            f"timeout?), so none of its {progress.old_answers} answer(s) could be from the new release"
            + (f"; last answer {last.describe()}" if last else "")
        )
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


@dataclass(frozen=True)
class Rules:
    """How long and how often the guard probes, and how many answers decide."""

    timeout: float
    interval: float = DEFAULT_INTERVAL
    successes_needed: int = DEFAULT_SUCCESSES
    fail_after: int = DEFAULT_FAIL_AFTER


@dataclass(frozen=True)
class Senses:
    """What the guard probes with, its clock and sleep, and whom it tells about each tick.

    ``listening(main_pid)`` tells whether the unit holds a listening socket (True/False/None: unknown); None here:
    /proc is read when the backend's units run on this host (``backend.local``), else nothing is checked.
    """

    probe: Callable[[], ProbeResult]
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    on_tick: Callable[[float, float, ProbeResult | None], None] | None = None
    listening: Callable[[int], bool | None] | None = None


def watch(
    backend: SystemdBackend,
    unit: str,
    rules: Rules,
    senses: Senses,
    *,
    baseline: Baseline | UnitState | None = None,
    old_pids: Collection[int] | None = (),
) -> GuardOutcome:
    """Watch ``unit`` and probe it until ready, failed, restart-looping, not ready or the timeout passed.

    ``baseline`` is the unit right after the restart being guarded (default: read now). SystemdError
    from the backend propagates: the caller decides what a broken systemd connection means.
    ``old_pids`` are the unit's PIDs read right before a reload (empty after a restart: nothing to wait for; None:
    unknown, every answer counts); answers count once all but the master have left (``backend.unit_pids``).
    """
    timeout, interval, successes_needed = rules.timeout, rules.interval, rules.successes_needed
    probe, clock, sleep, on_tick, listening = senses.probe, senses.clock, senses.sleep, senses.on_tick, senses.listening
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
    # The master stays through a HUP: only the workers it had then must leave.
    old_workers = None if old_pids is None else set(old_pids) - {baseline.main_pid}
    progress = Progress(baseline=baseline)
    while True:
        state = backend.state(unit)
        forced = unit_verdict(state, baseline)
        # Read the cgroup before the probe: an answer after the old workers were seen gone is the new release's.
        old_present = None if old_workers is None else bool(old_workers)
        if old_workers and forced is None:
            now = backend.unit_pids(unit)
            if now is not None:
                old_workers &= now  # a PID seen gone stays gone
            old_present = bool(old_workers) if now is not None else None
        answer = None if forced is not None else probe()
        elapsed = clock() - started
        # An answer from an active unit needs the evidence that the unit serves at all.
        serves = None
        if (
            listening is not None
            and answer is not None
            and answer.status_code is not None
            and state.active_state == "active"
            and not old_present
        ):
            serves = listening(state.main_pid)
        progress, verdict = decide(
            progress,
            Tick(state, answer, elapsed, listening=serves, old_present=old_present),
            timeout=timeout,
            successes_needed=successes_needed,
            fail_after=rules.fail_after,
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
