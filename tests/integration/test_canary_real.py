"""The canary for real: the new release runs beside the live one (a git worktree bound at the checkout's path, a
transient unit with the service's identity on its own unix socket) and is judged before the live service is touched.

Every release here is committed and then the live checkout goes back to the running one, as a deploy with --rev
of a fetched revision sees it: the new code is nowhere in the live tree until the switch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from apphelpers import http_get
from test_apply_real import Deploy

from unitctl.sandbox import Sandbox

pytestmark = pytest.mark.systemd

CANARY_DIR = "/var/lib/unitctl/canary"


class Canaried(Deploy):
    """A Deploy whose releases are committed aside: the live checkout stays at the running revision."""

    @property
    def canary_unit(self) -> str:
        return f"unitctl-run-{self.name}-canary.service"

    def release_aside(self, label: str, **kw: Any) -> str:
        """Commit release ``label`` on main, put the live checkout back where it was; return the new hash."""
        before = self.repo.head()
        rev = self.repo.release(label, **kw)
        self.repo.git("checkout", "-q", "--detach", before)
        return rev

    def canary_units(self) -> list[str]:
        out = self.box.run(["systemctl", "list-units", "--all", "--plain", "--no-legend", "unitctl-run-*"]).stdout
        return [line.split()[0] for line in out.splitlines() if self.name in line]

    def worktrees(self) -> list[str]:
        out = self.repo.git("worktree", "list", "--porcelain").stdout
        return [line.removeprefix("worktree ") for line in out.splitlines() if line.startswith("worktree ")]

    def leftovers(self) -> list[str]:
        """Return what a canary left: its unit, a worktree beside the checkout, its tree directory."""
        left = self.canary_units() + [w for w in self.worktrees() if w != self.repo.path]
        if self.box.exists(f"{CANARY_DIR}/{self.name}/work/tree"):
            left.append(f"{CANARY_DIR}/{self.name}/work/tree")
        return left

    def live(self) -> tuple[str, str]:
        props = self.box.unit_properties(self.unit, "InvocationID", "MainPID")
        return props["InvocationID"], props["MainPID"]

    def phase(self, record: dict[str, Any], name: str) -> dict[str, Any]:
        found = [p for p in record["phases"] if p["name"] == name]
        assert found, f"no phase {name} in {[p['name'] for p in record['phases']]}"
        last: dict[str, Any] = found[-1]
        return last


@pytest.fixture
def app(box: Sandbox, venv_bin: Path) -> Canaried:
    d = Canaried(box, venv_bin)
    d.first_release()
    assert d.served() == "release v1"
    return d


def test_a_ready_canary_lets_the_deploy_proceed_and_leaves_nothing(app: Canaried) -> None:
    v2 = app.release_aside("v2")
    res = app.apply("--rev", v2, "--json")
    assert res.returncode == 0, res.stderr
    record = json.loads(res.stdout)["result"]["record"]
    assert record["outcome"] == "ok" and record["to_rev"] == v2
    assert app.served() == "release v2" and app.repo.head() == v2
    assert "ready" in app.phase(record, "canary")["detail"]
    # The canary ran from the worktree, not from the live tree (which the worktree phase names).
    assert f"{CANARY_DIR}/{app.name}/work/tree" in app.phase(record, "worktree")["detail"]
    assert app.leftovers() == []
    assert app.worktrees() == [app.repo.path]


def test_a_release_that_is_not_ready_is_refused_by_its_canary_and_live_is_never_touched(app: Canaried) -> None:
    v1 = app.repo.head()
    live_before = app.live()
    v2 = app.release_aside("v2", table="items_v2")  # imports fine, its table is missing: 503 forever
    res = app.apply("--rev", v2, timeout=6)
    assert res.returncode == 3, res.stderr
    assert f"the canary of {v2[:12]} was not ready" in res.stderr and "the live service was not touched" in res.stderr
    assert "HTTP 503" in res.stderr and "table items_v2 is missing" in res.stderr
    assert app.live() == live_before and app.repo.head() == v1
    assert app.served() == "release v1" and app.ready()
    assert app.leftovers() == []
    record = app.history()[-1]
    assert record["outcome"] == "refused" and record["exit_code"] == 3
    assert "table items_v2 is missing" in record["reason"]
    assert record["journal"], "the canary's journal lines are kept in the history"
    names = [p["name"] for p in record["phases"]]
    assert "canary" in names and "switch" not in names and "guard" not in names


@pytest.mark.parametrize("backend", ["dbus", "systemctl"])
def test_the_import_check_runs_the_new_revision_from_the_canary_tree_on_both_backends(
    app: Canaried, backend: str
) -> None:
    # The live tree keeps v1, which imports: only a check that sees the worktree at the checkout's path fails.
    live_before = app.live()
    v2 = app.release_aside("v2", broken_import=True)
    res = app.apply("--rev", v2, "--backend", backend, "--json", timeout=30)
    assert res.returncode == 3, res.stderr
    record = json.loads(res.stdout)["result"]["record"]
    names = [p["name"] for p in record["phases"]]
    assert "pre-import" in names and "canary" not in names, names
    assert "BaseSettings" in record["reason"], record["reason"]
    assert app.live() == live_before and app.served() == "release v1"
    assert app.leftovers() == []


def test_a_canary_that_crashes_at_start_is_refused_by_its_unit_state(app: Canaried) -> None:
    live_before = app.live()
    # Skip the import check: only the canary stands between this release and the users.
    v2 = app.release_aside("v2", broken_import=True)
    res = app.apply("--rev", v2, "--no-pre-import", "--json", timeout=60)
    assert res.returncode == 3, res.stderr
    record = json.loads(res.stdout)["result"]["record"]
    detail = app.phase(record, "canary")["detail"]
    # Decided by systemd's view of the canary, not by waiting out the 60 s.
    assert detail.split(":")[0] in ("unit-failed", "main-exited", "restart-loop"), detail
    assert any("BaseSettings" in line for line in record["journal"]), record["journal"]
    assert app.live() == live_before and app.served() == "release v1"
    assert app.leftovers() == []


def test_a_deploy_killed_during_its_canary_is_cleaned_up_by_the_next_command(app: Canaried) -> None:
    v1 = app.repo.head()
    live_before = app.live()
    v2 = app.release_aside("v2", ready_after=60.0)  # the canary stays warming up while unitctl is killed
    proc = app.box.popen(app.argv("--rev", v2, timeout=90))
    try:
        deadline = time.monotonic() + 60
        while app.box.run(["systemctl", "is-active", app.canary_unit]).stdout.strip() != "active":
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the canary never started"
            time.sleep(0.2)
        pid = app.lock_holder()["pid"]
        app.box.run(["kill", "-9", str(pid)], check=True)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert app.canary_units() and len(app.worktrees()) == 2, "the kill left the canary behind (what recovery is for)"
    res = app.unitctl("status", app.name, "--history-dir", app.hist)
    assert "died at step canary" in res.stderr + res.stdout, res.stderr
    assert app.leftovers() == []
    assert app.live() == live_before and app.repo.head() == v1 and app.served() == "release v1"
    assert app.history()[-1]["outcome"] == "interrupted"


def test_the_live_service_never_runs_new_code_while_the_canary_runs(box: Sandbox, venv_bin: Path) -> None:
    d = Canaried(box, venv_bin)
    d.repo.release("v1")
    # Every request makes the live master replace its worker: each answer comes from a freshly loaded worker.
    assert d.apply("--unit-file", d.unit_file("v1", extra_args="--max-requests 1 ")).returncode == 0
    # The canary is not ready until its table exists: created once the live service answered a few times.
    v2 = d.release_aside("v2", table="items_v2")
    proc = box.popen(d.argv("--rev", v2, timeout=60))
    answers: list[str] = []
    try:
        canary_seen = False
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            canary_up = box.run(["systemctl", "is-active", d.canary_unit]).stdout.strip() == "active"
            if canary_up:
                canary_seen = True
                status, body = http_get(box, f"{d.url}/")
                answers.append(f"{status} {body.strip()}")
                if len(answers) == 8:
                    d.repo.make_db("items_v2")
            elif canary_seen:
                break
            time.sleep(0.05)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert len(answers) >= 3, "the live service was not asked while the canary ran"
    assert set(answers) == {"200 release v1"}, answers
    assert d.served() == "release v2"


def test_a_socket_activated_service_gets_a_canary_on_its_own_socket(box: Sandbox, venv_bin: Path) -> None:
    d = Canaried(box, venv_bin)
    box.write_file(
        f"/etc/systemd/system/{d.name}.socket",
        f"[Socket]\nListenStream=127.0.0.1:{d.port}\n\n[Install]\nWantedBy=sockets.target\n",
    )
    try:  # the first apply's restart starts the socket too (Requires=)
        # No --bind: Gunicorn serves the socket systemd hands it (LISTEN_FDS).
        text = d.repo.unit(venv_bin, port=d.port).replace(f"--bind 127.0.0.1:{d.port} ", "")
        text = text.replace("[Unit]\n", f"[Unit]\nRequires={d.name}.socket\nAfter={d.name}.socket\n")
        d.repo.release("v1")
        first = d.apply("--unit-file", d.repo.write_unit_file(text, "v1"))
        assert first.returncode == 0, first.stderr
        assert d.served() == "release v1"
        v2 = d.release_aside("v2")
        res = d.apply("--rev", v2, "--json")
        assert res.returncode == 0, res.stderr
        record = json.loads(res.stdout)["result"]["record"]
        assert "ready" in d.phase(record, "canary")["detail"]
        assert d.served() == "release v2" and d.leftovers() == []
        v3 = d.release_aside("v3", table="items_v3")
        res = d.apply("--rev", v3, timeout=5)
        assert res.returncode == 3 and "the canary of" in res.stderr, res.stderr
        assert d.served() == "release v2" and d.leftovers() == []
    finally:
        box.systemctl("stop", f"{d.name}.service", f"{d.name}.socket")
        box.run(["rm", "-f", f"/etc/systemd/system/{d.name}.socket"])
        box.systemctl("daemon-reload")
