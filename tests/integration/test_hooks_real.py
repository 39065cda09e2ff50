"""Hooks for real: --build-cmd, --pre-switch-cmd and --post-ready-cmd run as transient units with the service's
identity (the app user, not root), in the canary's tree before the switch and in the live tree after it.

Releases are committed aside (test_canary_real.Canaried): the live checkout stays at the running release until the
switch, so a hook that sees the new release before the switch saw the canary's tree.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from apphelpers import APP_USER
from test_canary_real import Canaried

from unitctl.sandbox import Sandbox

pytestmark = pytest.mark.systemd


@pytest.fixture
def app(box: Sandbox, venv_bin: Path) -> Canaried:
    d = Canaried(box, venv_bin)
    d.first_release()
    return d


def _out_dir(app: Canaried) -> str:
    """Return a directory the app user may write (the checkout is root's): where the hooks leave their traces."""
    path = f"{app.repo.root}/out"
    app.box.run(["install", "-d", "-o", APP_USER, "-g", APP_USER, path], check=True)
    return path


@pytest.mark.parametrize("backend", ["dbus", "systemctl"])
def test_the_build_hook_runs_as_the_services_user_on_the_new_release_twice(app: Canaried, backend: str) -> None:
    out = _out_dir(app)
    v1 = app.repo.head()
    v2 = app.release_aside("v2")
    hook = f"sh -c 'echo \"$(id -un) $(head -1 release.py) $PWD\" >> {out}/build.log'"
    res = app.apply("--rev", v2, "--build-cmd", hook, "--backend", backend, "--json")
    assert res.returncode == 0, res.stderr
    lines = app.box.read_file(f"{out}/build.log").decode().splitlines()
    # In the canary's tree (the live tree was still at v1) and in the live tree after its checkout: both v2, both
    # as the unit's User=, both at the checkout's own path.
    assert lines == [f"{APP_USER} RELEASE = 'v2' {app.repo.path}"] * 2, (lines, v1)
    assert app.served() == "release v2"
    record = app.history()[-1]
    builds = [p for p in record["phases"] if p["name"] == "hook build"]
    assert len(builds) == 2 and all(p["ok"] and f"as {APP_USER}" in p["detail"] for p in builds), builds
    assert "in the canary's tree" in builds[0]["detail"]
    assert app.leftovers() == []


def test_a_failing_pre_switch_hook_is_exit_3_and_the_live_release_still_serves(app: Canaried) -> None:
    v1 = app.repo.head()
    live_before = app.live()
    v2 = app.release_aside("v2")
    hook = "sh -c 'echo \"django.db.utils.OperationalError: no such column: items.price\" >&2; exit 1'"
    res = app.apply("--rev", v2, "--pre-switch-cmd", hook, "--post-ready-cmd", "/bin/true")
    assert res.returncode == 3, res.stderr
    assert "pre-switch hook" in res.stderr and "no such column: items.price" in res.stderr
    assert app.live() == live_before and app.repo.head() == v1
    assert app.served() == "release v1" and app.ready()
    assert app.leftovers() == []
    record = app.history()[-1]
    assert record["outcome"] == "refused" and "no such column: items.price" in record["output"]
    names = [p["name"] for p in record["phases"]]
    assert names.index("canary") < names.index("hook pre-switch") and "switch" not in names
    assert "hook post-ready" not in names


def test_a_failing_post_ready_hook_is_rolled_back(app: Canaried) -> None:
    v1 = app.repo.head()
    v2 = app.release_aside("v2")
    res = app.apply("--rev", v2, "--post-ready-cmd", "sh -c 'echo cache warm-up failed; exit 7'")
    assert res.returncode == 4, res.stderr
    assert "post-ready hook" in res.stderr and "exited 7: cache warm-up failed" in res.stderr
    assert app.served() == "release v1" and app.ready() and app.repo.head() == v1
    record = app.history()[-1]
    assert record["outcome"] == "rolled-back" and record["to_rev"] == v2
    names = [p["name"] for p in record["phases"]]
    assert names.index("guard") < names.index("hook post-ready") < names.index("rollback")
    assert app.leftovers() == []


def test_a_hook_that_exceeds_its_timeout_is_killed_and_reported(app: Canaried) -> None:
    v1 = app.repo.head()
    out = _out_dir(app)
    v2 = app.release_aside("v2")
    # It would write its file after 30 s: killed after 2, it never does.
    hook = f"sh -c 'echo started; sleep 30; touch {out}/finished'"
    res = app.apply("--rev", v2, "--build-cmd", hook, "--hook-timeout", "2")
    assert res.returncode == 3, res.stderr
    assert "did not finish within 2 s and was killed" in res.stderr
    assert app.served() == "release v1" and app.repo.head() == v1
    assert app.leftovers() == []
    assert not app.box.exists(f"{out}/finished")
    record = app.history()[-1]
    assert "(timeout) ---\nstarted" in record["output"]
