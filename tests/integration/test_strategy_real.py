"""The default strategy for real (issue 10): a code-only deploy and its rollback are a graceful HUP, the guard judges
only the workers started by the HUP, a release that answers 503 is failed early, and no request fails under load.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_apply_real import Deploy

from unitctl.sandbox import Sandbox

pytestmark = pytest.mark.systemd

LOADGEN = Path(__file__).resolve().parents[2] / "bench" / "loadgen.py"

# A release whose workers keep serving for 4 s after Gunicorn's SIGTERM (as a worker finishing slow requests
# would), answering ready: after a HUP the old release answers next to the new one.
LINGERING = """\
import os, signal, threading

signal.signal(signal.SIGTERM, lambda *_: threading.Timer(4.0, os._exit, (0,)).start())
RELEASE = {label!r}
TABLE = "items"
READY_AFTER = 0.0
"""


class Load:
    """bench/loadgen.py inside the sandbox: a few clients, a new connection per request, until ``finish``."""

    def __init__(self, d: Deploy, clients: int = 3) -> None:
        self.box = d.box
        tag = uuid.uuid4().hex[:6]
        self.stop, self.out = f"{d.repo.root}/load-stop-{tag}", f"{d.repo.root}/load-{tag}.json"
        argv = ["python3", str(LOADGEN), f"{d.url}/", self.stop, self.out, "--clients", str(clients)]
        self.proc = d.box.popen([*argv, "--max-seconds", "300"])

    def finish(self) -> list[list[Any]]:
        """Stop the clients; return every request as [start, seconds, status or error, release]."""
        self.box.write_file(self.stop, "")
        self.proc.wait(timeout=120)
        records: list[list[Any]] = json.loads(self.box.read_file(self.out))["records"]
        return records


def _failed(records: list[list[Any]]) -> list[list[Any]]:
    return [r for r in records if r[2] != "200"]


def _phase(record: dict[str, Any], name: str) -> dict[str, Any]:
    phase: dict[str, Any] = next(p for p in record["phases"] if p["name"] == name)
    return phase


def _probes(phase: dict[str, Any]) -> int:
    found = re.search(r"(\d+) probe\(s\)", phase["detail"])
    assert found, phase
    return int(found.group(1))


def test_a_good_code_only_deploy_with_the_defaults_is_a_hup_and_fails_no_request(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    pid = d.main_pid()
    v2 = d.repo.release("v2")
    load = Load(d)
    res = d.apply()  # no --strategy: auto
    records = load.finish()
    assert res.returncode == 0, res.stderr
    assert d.main_pid() == pid and d.served() == "release v2" and d.repo.head() == v2
    last = d.history()[-1]
    assert (last["strategy"], last["action"], last["outcome"]) == ("auto", "reload", "ok")
    assert _phase(last, "guard")["detail"].startswith("ready:")
    assert {"v1", "v2"} <= {r[3] for r in records}, "the load did not span the switch"
    assert _failed(records) == []


def test_a_503_release_after_a_hup_is_failed_early_and_rolled_back_by_a_hup_with_no_failed_request(
    box: Sandbox, venv_bin: Path
) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    v2 = d.second_release()
    pid = d.main_pid()
    v4 = d.repo.release("v4", table="items_v4")  # imports, then answers 503 on /health/ready for ever
    load = Load(d)
    res = d.apply("--no-canary", timeout=30)  # about the rollback after the switch: a canary refuses v4 first
    records = load.finish()
    assert res.returncode == 4, res.stderr
    assert "10 consecutive not-ready answers" in res.stderr and "items_v4" in res.stderr
    assert d.main_pid() == pid and d.repo.head() == v2 and d.served() == "release v2" and d.ready()
    last = d.history()[-1]
    assert (last["outcome"], last["to_rev"], last["action"], last["rollback_action"]) == (
        "rolled-back", v4, "reload", "reload",
    )  # fmt: skip
    guard = _phase(last, "guard")
    assert guard["detail"].startswith("not-ready:") and "flapping" not in guard["detail"]
    # Decided on the early verdict: far fewer probes than waiting out 30 s at 0.2 s would take.
    assert 10 <= _probes(guard) < 30 / 0.2
    assert "reloaded (the unit is unchanged and the master is alive" in _phase(last, "rollback")["detail"]
    assert _phase(last, "rollback-guard")["detail"].startswith("ready:")
    assert {"v2", "v4"} <= {r[3] for r in records}, "the load did not span the deploy and its rollback"
    assert _failed(records) == []


def test_with_the_defaults_a_503_release_is_refused_by_its_canary_and_never_answers_a_user(
    box: Sandbox, venv_bin: Path
) -> None:
    d = Deploy(box, venv_bin)
    d.first_release()
    v2 = d.second_release()
    pid = d.main_pid()
    d.repo.release("v4", table="items_v4")  # imports, then answers 503 on /health/ready for ever
    load = Load(d)
    res = d.apply(timeout=30)  # the defaults: canary on, strategy auto, early verdict
    records = load.finish()
    assert res.returncode == 3, res.stderr
    assert "the canary of" in res.stderr and "the live service was not touched" in res.stderr
    assert d.main_pid() == pid and d.repo.head() == v2 and d.served() == "release v2" and d.ready()
    assert d.history()[-1]["outcome"] == "refused"
    assert _failed(records) == []
    assert len(records) > 0 and {r[3] for r in records} == {"v2"}, "only the live release answered users"


def test_the_guard_does_not_count_the_old_workers_answering_ready(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    d.repo.release("v1", extra_files={"release.py": LINGERING.format(label="v1")})
    assert d.apply("--unit-file", d.unit_file("v1")).returncode == 0
    # After the HUP the v1 workers answer ready for 4 s more, next to v4's workers answering 503.
    d.repo.release("v4", table="items_v4")
    res = d.apply("--no-canary", timeout=30)  # about the guard after the switch: a canary refuses v4 first
    assert res.returncode == 4, res.stderr
    last = d.history()[-1]
    guard = _phase(last, "guard")
    assert guard["detail"].startswith("not-ready:") and "flapping" not in guard["detail"], guard
    assert _probes(guard) > 10  # the answers while v1's workers were still in the cgroup did not count
    assert d.served() == "release v1" and d.ready()


def test_unitctl_rollback_of_a_code_only_deploy_is_a_hup(box: Sandbox, venv_bin: Path) -> None:
    d = Deploy(box, venv_bin)
    v1 = d.first_release()
    d.second_release()
    pid = d.main_pid()
    res = d.unitctl("rollback", d.name, "--history-dir", d.hist, "--ready-timeout", "30")
    assert res.returncode == 0, res.stderr
    assert d.served() == "release v1" and d.repo.head() == v1 and d.main_pid() == pid
    last = d.history()[-1]
    assert (last["command"], last["strategy"], last["action"]) == ("rollback", "auto", "reload")
