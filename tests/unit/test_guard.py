"""The guard's decisions, driven by the fake backend, a fake clock and real Probes over httpx.MockTransport."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest
from fakeclock import Clock
from hypothesis import given, settings
from hypothesis import strategies as st

from unitctl import guard
from unitctl.errors import SystemdError, UsageError
from unitctl.probe import Probe, ProbeResult
from unitctl.systemd.fake import FakeSystemd, failed_state, running_state

UNIT = "app.service"


def scripted_probe(
    answers: Iterable[int | Exception], clock: Clock | None = None, cost: float = 0.01
) -> tuple[Probe, list[httpx.Request]]:
    """A real Probe whose transport answers with ``answers`` in turn (the last one repeats)."""
    items = list(answers)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if clock is not None:
            clock.now += cost
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, Exception):
            raise item
        headers = {"location": "http://elsewhere.example/login"} if 300 <= item < 400 else {}
        return httpx.Response(item, text=f"status {item}", headers=headers)

    return Probe("http://127.0.0.1:8000/health/ready", transport=httpx.MockTransport(handler)), seen


def setup() -> tuple[FakeSystemd, Clock]:
    fake = FakeSystemd()
    fake.add_unit(UNIT)
    fake.restart(UNIT)
    clock = Clock()
    return fake, clock


def run(
    fake: FakeSystemd,
    clock: Clock,
    probe: Callable[[], ProbeResult],
    *,
    timeout: float = 30,
    **kw: Any,
) -> guard.GuardOutcome:
    rules = {k: kw.pop(k) for k in ("successes_needed", "fail_after") if k in kw}
    senses = {k: kw.pop(k) for k in ("on_tick", "listening") if k in kw}
    return guard.watch(
        fake,
        UNIT,
        guard.Rules(timeout, interval=0.5, **rules),
        guard.Senses(probe, clock=clock, sleep=clock.sleep, **senses),
        **kw,
    )


def test_503_503_then_three_200_is_ready_after_five_probes() -> None:
    fake, clock = setup()
    probe, seen = scripted_probe([503, 503, 200, 200, 200, 503], clock)
    outcome = run(fake, clock, probe)
    assert outcome.ready and outcome.kind == "ready", outcome
    assert outcome.probes == 5 and len(seen) == 5
    assert outcome.last_probe is not None and outcome.last_probe.status_code == 200
    assert outcome.elapsed == pytest.approx(4 * 0.5 + 5 * 0.01)
    assert "3 consecutive" in outcome.reason


def test_connection_refused_then_ready() -> None:
    fake, clock = setup()
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    probe, _ = scripted_probe([refused, refused, 200], clock)
    outcome = run(fake, clock, probe)
    assert outcome.ready and outcome.probes == 5


def test_refused_until_timeout_names_the_reason_and_does_not_overrun() -> None:
    fake, clock = setup()
    probe, seen = scripted_probe([httpx.ConnectError("[Errno 111] Connection refused")], clock)
    outcome = run(fake, clock, probe, timeout=5)
    assert not outcome.ready and outcome.kind == "timeout"
    assert "connection refused" in outcome.reason and "within 5s" in outcome.reason
    assert 5 <= outcome.elapsed < 5.1
    assert len(seen) == outcome.probes >= 10


def test_probe_timeouts_count_as_not_ready() -> None:
    fake, clock = setup()
    probe, _ = scripted_probe([httpx.ReadTimeout("read timed out")], clock, cost=2.0)
    outcome = run(fake, clock, probe, timeout=6)
    assert outcome.kind == "timeout"
    assert outcome.last_probe is not None and "timed out" in (outcome.last_probe.error or "")


def test_redirect_is_not_ready_and_is_not_followed() -> None:
    fake, clock = setup()
    probe, seen = scripted_probe([302], clock)
    outcome = run(fake, clock, probe, timeout=3)
    assert outcome.kind == "timeout"
    assert {r.url.host for r in seen} == {"127.0.0.1"}
    assert "redirect to http://elsewhere.example/login (not followed)" in outcome.reason


def test_flapping_never_reaches_three_in_a_row() -> None:
    fake, clock = setup()
    probe, _ = scripted_probe([200, 200, 503] * 20, clock)
    outcome = run(fake, clock, probe, timeout=10)
    assert outcome.kind == "timeout"
    assert "flapping" in outcome.reason and "best run 2/3" in outcome.reason


def test_any_non_2xx_resets_the_streak() -> None:
    fake, clock = setup()
    probe, _ = scripted_probe([200, 200, 500, 200, 200, 200], clock)
    outcome = run(fake, clock, probe)
    assert outcome.ready and outcome.probes == 6


def test_unit_failed_immediately_is_decided_without_probing() -> None:
    fake, clock = setup()
    inv = fake.state(UNIT).invocation_id
    fake.script_states(UNIT, [failed_state(UNIT, status=3, invocation_id=inv)])
    probe, seen = scripted_probe([200], clock)
    outcome = run(fake, clock, probe, timeout=60)
    assert outcome.kind == "unit-failed" and not outcome.ready
    assert outcome.elapsed == 0 and seen == []
    assert "ExecMainStatus=3" in outcome.reason and UNIT in outcome.reason


def test_failure_after_a_few_probes_is_decided_at_that_tick() -> None:
    fake, clock = setup()
    ok = fake.state(UNIT)
    fake.script_states(UNIT, [ok, ok, dataclasses.replace(failed_state(UNIT), invocation_id=ok.invocation_id)])
    probe, seen = scripted_probe([503], clock)
    outcome = run(fake, clock, probe, timeout=60, baseline=ok)
    assert outcome.kind == "unit-failed"
    assert len(seen) == 2 and outcome.elapsed < 1.1


def test_restart_loop_via_nrestarts() -> None:
    fake, clock = setup()
    ok = fake.state(UNIT)
    fake.script_states(UNIT, [ok, dataclasses.replace(ok, n_restarts=1, main_pid=ok.main_pid + 7)])
    probe, _ = scripted_probe([503], clock)
    outcome = run(fake, clock, probe)
    assert outcome.kind == "restart-loop" and "NRestarts 0 -> 1" in outcome.reason


def test_restart_loop_via_auto_restart_substate() -> None:
    fake, clock = setup()
    ok = fake.state(UNIT)
    waiting = dataclasses.replace(
        ok, active_state="activating", sub_state="auto-restart", main_pid=0, result="exit-code", exec_main_status=1
    )
    fake.script_states(UNIT, [waiting])
    probe, seen = scripted_probe([200], clock)
    outcome = run(fake, clock, probe)
    assert outcome.kind == "restart-loop" and seen == []
    assert "auto-restart" in outcome.reason


def test_restart_loop_via_new_invocation_id() -> None:
    fake, clock = setup()
    ok = fake.state(UNIT)
    fake.script_states(UNIT, [ok, dataclasses.replace(ok, invocation_id="f" * 32)])
    probe, _ = scripted_probe([503], clock)
    outcome = run(fake, clock, probe)
    assert outcome.kind == "restart-loop" and "InvocationID changed" in outcome.reason


def test_main_exited_inactive() -> None:
    fake, clock = setup()
    ok = fake.state(UNIT)
    gone = dataclasses.replace(ok, active_state="inactive", sub_state="dead", main_pid=0)
    fake.script_states(UNIT, [gone])
    probe, _ = scripted_probe([200], clock)
    outcome = run(fake, clock, probe)
    assert outcome.kind == "main-exited" and "inactive/dead" in outcome.reason


def test_main_exited_while_active_without_main_pid() -> None:
    fake, clock = setup()
    ok = fake.state(UNIT)
    fake.script_states(UNIT, [dataclasses.replace(ok, sub_state="exited", main_pid=0)])
    probe, _ = scripted_probe([200], clock)
    assert run(fake, clock, probe).kind == "main-exited"


def test_main_pid_change_is_a_restart_behind_our_back() -> None:
    fake, clock = setup()
    ok = fake.state(UNIT)
    fake.script_states(UNIT, [dataclasses.replace(ok, main_pid=ok.main_pid + 1)])
    probe, _ = scripted_probe([200], clock)
    assert run(fake, clock, probe, baseline=ok).kind == "restart-loop"


def test_missing_unit_is_unit_failed() -> None:
    fake, clock = FakeSystemd(), Clock()
    probe, _ = scripted_probe([200], clock)
    outcome = guard.watch(fake, "gone.service", guard.Rules(5), guard.Senses(probe, clock=clock, sleep=clock.sleep))
    assert outcome.kind == "unit-failed" and "not-found" in outcome.reason


def test_activating_unit_keeps_being_probed() -> None:
    fake, clock = setup()
    ok = fake.state(UNIT)
    starting = dataclasses.replace(ok, active_state="activating", sub_state="start")
    fake.script_states(UNIT, [starting, starting, ok])
    probe, _ = scripted_probe([503, 200], clock)
    outcome = run(fake, clock, probe)
    assert outcome.ready and outcome.probes == 4


def test_explicit_baseline_catches_a_restart_that_happened_before_watch_started() -> None:
    fake, clock = setup()
    before = fake.state(UNIT)
    fake.script_states(UNIT, [dataclasses.replace(before, n_restarts=2, invocation_id="e" * 32)])
    probe, _ = scripted_probe([200], clock)
    outcome = run(fake, clock, probe, baseline=before)
    assert outcome.kind == "restart-loop"


def test_on_tick_reports_progress() -> None:
    fake, clock = setup()
    probe, _ = scripted_probe([503, 200], clock)
    ticks: list[tuple[float, float, int | None]] = []
    run(fake, clock, probe, on_tick=lambda e, t, p: ticks.append((e, t, p.status_code if p else None)))
    assert [t[2] for t in ticks] == [503, 200, 200, 200]
    assert all(t[1] == 30 for t in ticks) and ticks == sorted(ticks)


def test_successes_needed_one() -> None:
    fake, clock = setup()
    probe, _ = scripted_probe([200], clock)
    outcome = run(fake, clock, probe, successes_needed=1)
    assert outcome.ready and outcome.probes == 1 and clock.sleeps == []


@pytest.mark.parametrize(
    ("kw", "text"),
    [({"timeout": 0}, "positive"), ({"timeout": 5, "interval": -1}, "positive"), ({"successes_needed": 0}, "one")],
)
def test_bad_parameters_are_usage_errors(kw: dict[str, float], text: str) -> None:
    fake, clock = setup()
    probe, _ = scripted_probe([200], clock)
    args: dict[str, float] = {"timeout": 5, **kw}
    with pytest.raises(UsageError, match=text):
        guard.watch(fake, UNIT, guard.Rules(**args), guard.Senses(probe, clock=clock, sleep=clock.sleep))  # type: ignore[arg-type]
    assert fake.ops() == ["restart"]


def test_systemd_errors_propagate() -> None:
    fake, clock = setup()

    def broken(unit: str) -> None:
        raise SystemdError("state of app.service failed: bus gone")

    fake.state = broken  # type: ignore[method-assign,assignment]
    probe, _ = scripted_probe([200], clock)
    with pytest.raises(SystemdError, match="bus gone"):
        run(fake, clock, probe)


# -- the pure decision function ---------------------------------------------------------------------


def _ok(code: int = 200) -> ProbeResult:
    return ProbeResult(200 <= code < 300, code, None, 0.01, "")


def test_decide_is_pure_and_counts_streaks() -> None:
    st = running_state(UNIT, main_pid=5, invocation_id="a" * 32)
    p0 = guard.Progress(baseline=guard.Baseline.of(st))
    p1, v1 = guard.decide(p0, guard.Tick(st, _ok(), 0.0), timeout=10)
    assert v1 is None and p1.streak == 1 and p0.streak == 0
    p2, v2 = guard.decide(p1, guard.Tick(st, _ok(503), 0.5), timeout=10)
    assert v2 is None and p2.streak == 0 and p2.best_streak == 1 and p2.non_ready == 1
    p3, v3 = guard.decide(p2, guard.Tick(st, None, 10.0), timeout=10)
    assert v3 is not None and v3.kind == "timeout" and p3.probes == 2


def test_decide_ready_wins_on_the_last_tick_before_timeout() -> None:
    st = running_state(UNIT, main_pid=5, invocation_id="a" * 32)
    progress = guard.Progress(baseline=guard.Baseline.of(st), streak=2)
    _, verdict = guard.decide(progress, guard.Tick(st, _ok(), 10.0), timeout=10)
    assert verdict is not None and verdict.ready


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        ({"active_state": "failed", "sub_state": "failed", "main_pid": 0}, "unit-failed"),
        ({"load_state": "not-found"}, "unit-failed"),
        ({"sub_state": "auto-restart", "active_state": "activating"}, "restart-loop"),
        ({"n_restarts": 1}, "restart-loop"),
        ({"invocation_id": "b" * 32}, "restart-loop"),
        ({"main_pid": 6}, "restart-loop"),
        ({"active_state": "inactive", "sub_state": "dead", "main_pid": 0}, "main-exited"),
        ({"active_state": "deactivating", "sub_state": "stop-sigterm"}, "main-exited"),
        ({"main_pid": 0}, "main-exited"),
        ({"active_state": "reloading", "sub_state": "reload"}, None),
        ({"active_state": "activating", "sub_state": "start"}, None),
        ({}, None),
    ],
)
def test_unit_verdicts(change: dict[str, object], kind: str | None) -> None:
    base = running_state(UNIT, main_pid=5, invocation_id="a" * 32)
    state = dataclasses.replace(base, **change)  # type: ignore[arg-type]
    verdict = guard.unit_verdict(state, guard.Baseline.of(base))
    assert (verdict.kind if verdict else None) == kind


# -- property: the loop agrees with a direct reading of the answer sequence ------------------------------


@settings(max_examples=200, deadline=None)
@given(
    codes=st.lists(st.sampled_from([200, 204, 301, 404, 500, 503]), min_size=1, max_size=15),
    needed=st.integers(min_value=1, max_value=4),
    fail_after=st.integers(min_value=0, max_value=4),
)
def test_ready_or_not_ready_exactly_when_enough_consecutive_answers_arrive_in_time(
    codes: list[int], needed: int, fail_after: int
) -> None:
    fake, clock = setup()
    answers = iter(codes)

    def probe() -> ProbeResult:
        code = next(answers, 503)  # past the script: not ready
        return ProbeResult(200 <= code < 300, code, None, 0.0, "")

    outcome = run(fake, clock, probe, timeout=5, successes_needed=needed, fail_after=fail_after)
    ticks_allowed = int(5 / 0.5) + 1  # t = 0, 0.5, ..., 5.0
    padded = (codes + [503] * ticks_allowed)[:ticks_allowed]
    expected: tuple[str, int] | None = None
    streak = failing = 0
    for i, code in enumerate(padded):
        ok = 200 <= code < 300
        streak, failing = (streak + 1, 0) if ok else (0, failing + 1)
        if streak >= needed:
            expected = ("ready", i + 1)
            break
        if fail_after and failing >= fail_after:
            expected = ("not-ready", i + 1)
            break
    if expected is None:
        assert outcome.kind == "timeout" and outcome.probes == ticks_allowed and outcome.elapsed == 5
    else:
        assert (outcome.kind, outcome.probes) == expected
        assert outcome.elapsed == pytest.approx((expected[1] - 1) * 0.5)


# -- ready means the URL answers AND the unit is active (issue 9: another service on the URL) -----------------


def test_ready_answers_while_the_unit_is_activating_do_not_count_and_the_timeout_says_so() -> None:
    fake, clock = setup()
    starting = dataclasses.replace(fake.state(UNIT), active_state="activating", sub_state="start")
    fake.script_states(UNIT, [starting])  # sticks: the unit never becomes active
    probe, seen = scripted_probe([200], clock)  # ...while something else answers on the URL
    outcome = run(fake, clock, probe, timeout=5)
    assert not outcome.ready and outcome.kind == "timeout", outcome
    assert len(seen) > 3
    assert "the URL answered ready" in outcome.reason and "activating/start, not active" in outcome.reason


def test_unit_failing_right_after_the_last_ready_answer_is_not_ready() -> None:
    fake, clock = setup()
    ok = fake.state(UNIT)
    failed = dataclasses.replace(failed_state(UNIT, status=1), invocation_id=ok.invocation_id)
    # baseline, three ticks active with 200, then the unit is read once more before "ready": it has failed.
    fake.script_states(UNIT, [ok, ok, ok, ok, failed])
    probe, seen = scripted_probe([200], clock)
    outcome = run(fake, clock, probe, timeout=30)
    assert not outcome.ready and outcome.kind == "unit-failed", outcome
    assert len(seen) == 3


def test_unit_back_to_activating_after_the_last_ready_answer_keeps_watching() -> None:
    fake, clock = setup()
    ok = fake.state(UNIT)
    starting = dataclasses.replace(ok, active_state="activating", sub_state="start")
    fake.script_states(UNIT, [ok, ok, ok, ok, starting, ok])
    probe, seen = scripted_probe([200], clock)
    outcome = run(fake, clock, probe, timeout=30)
    assert outcome.ready, outcome
    assert len(seen) == 6  # the streak started again after the unit was seen not active


def test_timeout_with_the_unit_active_says_the_url_is_what_is_not_ready() -> None:
    fake, clock = setup()
    probe, _ = scripted_probe([503], clock)
    outcome = run(fake, clock, probe, timeout=3)
    assert outcome.kind == "timeout"
    assert f"{UNIT} is active but its URL is not ready, last answer HTTP 503" in outcome.reason, outcome.reason


def test_decide_does_not_count_a_ready_answer_while_the_unit_is_not_active() -> None:
    st = running_state(UNIT, main_pid=5, invocation_id="a" * 32)
    reloading = dataclasses.replace(st, active_state="reloading", sub_state="reload")
    progress = guard.Progress(baseline=guard.Baseline.of(st), streak=2)
    after, verdict = guard.decide(progress, guard.Tick(reloading, _ok(), 1.0), timeout=10)
    assert verdict is None and after.streak == 0 and after.unit_not_active == 1
    _, verdict = guard.decide(progress, guard.Tick(st, _ok(), 1.0), timeout=10)
    assert verdict is not None and verdict.ready


def test_ready_answers_while_the_unit_listens_on_no_socket_do_not_count() -> None:
    # A Type=simple Gunicorn retrying a bind another service holds is active, and that service answers the URL.
    fake, clock = setup()
    probe, _ = scripted_probe([200], clock)
    pids: list[int] = []

    def deaf(pid: int) -> bool:
        pids.append(pid)
        return False

    outcome = run(fake, clock, probe, timeout=3, listening=deaf)
    assert not outcome.ready and outcome.kind == "timeout", outcome
    assert "the URL answered ready (HTTP 200)" in outcome.reason
    assert "active/running but listens on no socket; is another service answering on that URL?" in outcome.reason
    assert pids and set(pids) == {fake.state(UNIT).main_pid}


@pytest.mark.parametrize("answer", [True, None])
def test_a_unit_that_listens_or_cannot_be_checked_becomes_ready(answer: bool | None) -> None:
    fake, clock = setup()
    probe, _ = scripted_probe([200], clock)
    outcome = run(fake, clock, probe, listening=lambda pid: answer)
    assert outcome.ready and outcome.probes == 3, outcome


def test_the_fake_backend_is_never_looked_up_in_proc() -> None:
    fake, clock = setup()
    assert fake.local is False  # its made-up pids may exist on the host
    probe, _ = scripted_probe([200], clock)
    assert run(fake, clock, probe).ready


# -- the early verdict: N consecutive HTTP non-2xx answers from the new release (issue 10) ------------------------


def test_ten_503_in_a_row_fail_the_release_long_before_the_timeout() -> None:
    fake, clock = setup()
    probe, seen = scripted_probe([503], clock)
    outcome = run(fake, clock, probe, timeout=60)
    assert (outcome.ready, outcome.kind) == (False, "not-ready"), outcome
    assert outcome.probes == len(seen) == guard.DEFAULT_FAIL_AFTER == 10
    assert outcome.elapsed < 60 / 4
    assert "10 consecutive not-ready answers" in outcome.reason and "the last HTTP 503" in outcome.reason


def test_a_2xx_starts_the_count_again() -> None:
    fake, clock = setup()
    probe, _ = scripted_probe([503] * 9 + [200] + [503] * 10, clock)
    outcome = run(fake, clock, probe, timeout=60)
    assert outcome.kind == "not-ready" and outcome.probes == 20, outcome


def test_refused_connections_and_timeouts_neither_count_nor_start_the_count_again() -> None:
    fake, clock = setup()
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    slow = httpx.ReadTimeout("read timed out")
    probe, _ = scripted_probe([503] * 5 + [refused] * 20 + [slow] * 3 + [503] * 5, clock)
    outcome = run(fake, clock, probe, timeout=60)
    assert outcome.kind == "not-ready" and outcome.probes == 33, outcome


def test_refused_for_ever_is_a_timeout_not_an_early_verdict() -> None:
    fake, clock = setup()
    probe, _ = scripted_probe([httpx.ConnectError("[Errno 111] Connection refused")], clock)
    assert run(fake, clock, probe, timeout=20).kind == "timeout"


def test_fail_after_zero_waits_out_the_timeout() -> None:
    fake, clock = setup()
    probe, _ = scripted_probe([503], clock)
    outcome = run(fake, clock, probe, timeout=20, fail_after=0)
    assert outcome.kind == "timeout" and outcome.probes == 41


def test_not_ready_answers_while_the_unit_is_not_serving_do_not_count() -> None:
    fake, clock = setup()
    probe, _ = scripted_probe([503], clock)
    outcome = run(fake, clock, probe, timeout=5, listening=lambda pid: False)  # someone else answers the URL
    assert outcome.kind == "timeout", outcome


def test_decide_counts_only_http_answers_that_are_not_ready() -> None:
    st = running_state(UNIT, main_pid=5, invocation_id="a" * 32)
    progress = guard.Progress(baseline=guard.Baseline.of(st))
    refused = ProbeResult(False, None, "connection refused", 0.01)
    for answer, failing in ((_ok(503), 1), (refused, 1), (_ok(500), 2), (_ok(200), 0), (_ok(404), 1)):
        progress, verdict = guard.decide(progress, guard.Tick(st, answer, 1.0), timeout=10, fail_after=3)
        assert verdict is None and progress.failing == failing
    progress, verdict = guard.decide(progress, guard.Tick(st, _ok(503), 1.0), timeout=10, fail_after=2)
    assert verdict is not None and verdict.kind == "not-ready" and "--fail-after 2" in verdict.reason


# -- after a reload only the new generation counts (issue 10) --------------------------------------------------


def _reloaded(fake: FakeSystemd, pid_reads: list[set[int] | None]) -> tuple[set[int], int]:
    """The unit's PIDs before a HUP (master + 2 workers), and the cgroup reads after it, in turn."""
    master = fake.state(UNIT).main_pid
    fake.script_pids(UNIT, pid_reads)
    return {master, 11, 12}, master


def test_decide_ignores_answers_while_the_old_generation_is_present() -> None:
    st = running_state(UNIT, main_pid=5, invocation_id="a" * 32)
    progress = guard.Progress(baseline=guard.Baseline.of(st))
    for _ in range(5):
        progress, verdict = guard.decide(progress, guard.Tick(st, _ok(), 1.0, old_present=True), timeout=10)
        assert verdict is None
    assert (progress.streak, progress.best_streak, progress.old_answers, progress.probes) == (0, 0, 5, 5)
    for _ in range(5):
        progress, verdict = guard.decide(progress, guard.Tick(st, _ok(503), 1.0, old_present=True), timeout=10,
                                         fail_after=2)  # fmt: skip
        assert verdict is None and progress.failing == 0
    for present in (False, None):  # gone, or unknown (the fallback: every answer counts)
        after, verdict = guard.decide(progress, guard.Tick(st, _ok(), 1.0, old_present=present), timeout=10,
                                      successes_needed=1)  # fmt: skip
        assert verdict is not None and verdict.ready


def test_old_workers_answering_ready_do_not_make_a_never_ready_release_ready() -> None:
    fake, clock = setup()
    old, master = _reloaded(fake, [{master_pid(fake), 11, 12, 21, 22}, {master_pid(fake), 12, 21, 22},
                                   {master_pid(fake), 21, 22}])  # fmt: skip
    # The old workers answer 200 for three ticks, then only the new release answers: 503 for ever.
    probe, _ = scripted_probe([200, 200, 200, 503], clock)
    outcome = run(fake, clock, probe, timeout=60, old_pids=old)
    assert (outcome.ready, outcome.kind) == (False, "not-ready"), outcome
    assert outcome.probes == 3 + 10
    assert "flapping" not in outcome.reason and "HTTP 503" in outcome.reason
    assert ("unit_pids", UNIT) in fake.calls and master in old


def test_without_the_early_verdict_a_never_ready_release_after_a_reload_is_not_flapping() -> None:
    fake, clock = setup()
    old, _ = _reloaded(fake, [{11, 12}, {12}, set()])
    probe, _ = scripted_probe([200, 200, 503], clock)
    outcome = run(fake, clock, probe, timeout=10, old_pids=old, fail_after=0)
    assert outcome.kind == "timeout" and "flapping" not in outcome.reason, outcome
    assert "is active but its URL is not ready, last answer HTTP 503" in outcome.reason


def test_a_good_release_is_ready_only_on_answers_after_the_old_workers_left() -> None:
    fake, clock = setup()
    old, _ = _reloaded(fake, [{11, 12}, {12}, set()])
    probe, seen = scripted_probe([200], clock)
    outcome = run(fake, clock, probe, old_pids=old)
    assert outcome.ready and outcome.probes == 2 + 3 == len(seen), outcome


def test_old_workers_that_never_leave_end_in_a_timeout_that_says_so() -> None:
    fake, clock = setup()
    old, _ = _reloaded(fake, [{12, 30}])  # worker 12 is stuck in its graceful timeout
    probe, _ = scripted_probe([503], clock)
    outcome = run(fake, clock, probe, timeout=10, old_pids=old)
    assert outcome.kind == "timeout", outcome
    assert "the workers from before the reload never left" in outcome.reason
    assert "none of its 21 answer(s) could be from the new release" in outcome.reason


def test_an_unreadable_cgroup_falls_back_to_counting_every_answer() -> None:
    fake, clock = setup()
    old, _ = _reloaded(fake, [None])
    probe, _ = scripted_probe([200], clock)
    outcome = run(fake, clock, probe, old_pids=old)
    assert outcome.ready and outcome.probes == 3
    fake2, clock2 = setup()
    probe2, _ = scripted_probe([200], clock2)
    assert run(fake2, clock2, probe2, old_pids=None).probes == 3  # unknown before the reload: the same
    assert ("unit_pids", UNIT) not in fake2.calls


def test_after_a_restart_there_is_no_old_generation_to_wait_for() -> None:
    fake, clock = setup()
    probe, _ = scripted_probe([200], clock)
    assert run(fake, clock, probe).probes == 3
    assert ("unit_pids", UNIT) not in fake.calls


def master_pid(fake: FakeSystemd) -> int:
    return fake.state(UNIT).main_pid
