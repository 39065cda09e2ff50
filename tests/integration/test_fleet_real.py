"""Many servers, for real (issue 13): three sandboxed hosts, unitctl installed on them by the role from the built
wheel and a wheelhouse (offline), releases rolled out by the real ansible-playbook with the collection's playbook.

Ansible reaches each host with community.docker.nsenter (``ansible_nsenter_pid`` = the sandbox's leader): no
network. Each host's app listens on its own loopback and is asked from inside. unitctl.fleetdemo holds the fleet
(also the demo, scripts/demo-fleet.sh); these tests check more than its table: the order, the load balancer hooks,
who was restarted, check and diff mode. The tests run in file order on one module-scoped fleet: each starts from
the state the previous one left (v2 serving everywhere after the second).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator

import pytest

from unitctl import sandbox as sandbox_mod
from unitctl.fleetdemo import BASE, HOSTS, NAME, ROLLOUTS, Fleet, booted_fleet, build_wheelhouse
from unitctl.fleetdemo import Release as FleetRelease

pytestmark = pytest.mark.systemd

RELEASES = {r.tag: r for r in ROLLOUTS}
SERVER_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}


@pytest.fixture(scope="module")
def fleet(sandbox: sandbox_mod.Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Three booted hosts with the example app and unitctl installed by the role (the session sandbox proves the
    host can boot one, or skips/fails as every real test does)."""
    work = tmp_path_factory.mktemp("fleet")
    wheel, house = build_wheelhouse(work)
    with booted_fleet(work) as f:
        f.build_apps()
        installed = f.install(wheel, house)
        assert installed.returncode == 0, installed.stdout[-4000:] + installed.stderr[-2000:]
        yield f


def _recap(output: str) -> dict[str, dict[str, int]]:
    """Return ansible-playbook's PLAY RECAP as host -> {ok: n, changed: n, ...}."""
    recap: dict[str, dict[str, int]] = {}
    for m in re.finditer(r"^(\S+)\s+: ((?:\w+=\d+\s*)+)$", output, flags=re.M):
        recap[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return recap


def _deploy_task_hosts(output: str) -> list[list[str]]:
    """Return, for each run of the deploy task (one per batch), the hosts it reported on, in order."""
    runs: list[list[str]] = []
    for chunk in output.split("TASK [Deploy the release, guarded]")[1:]:
        body = chunk.split("\nTASK [", 1)[0]
        runs.append(re.findall(r"^(?:changed|ok|fatal): \[([^\]]+)\]", body, flags=re.M))
    return runs


def test_the_role_installs_unitctl_on_every_host_and_a_second_run_changes_nothing(fleet: Fleet) -> None:
    for host, box in fleet.boxes.items():
        assert box.run(["readlink", "/usr/local/bin/unitctl"]).stdout.strip() == "/opt/unitctl/current/bin/unitctl"
        version = box.run(["env", "-C", "/", "unitctl", "--version"], env=SERVER_ENV)
        assert version.ok and version.stdout.startswith("unitctl "), (host, version.stderr)
        where = box.run(["/opt/unitctl/current/bin/python", "-c", "import unitctl; print(unitctl.__file__)"])
        assert where.stdout.startswith("/opt/unitctl/"), "the installed copy runs, not the checkout"
        config = tomllib.loads(box.read_file("/etc/unitctl/unitctl.toml").decode())
        assert config["deploy"][NAME]["repo"] == f"{BASE}/app"
    assert fleet.installed_from is not None
    again = fleet.install(*fleet.installed_from)
    assert again.returncode == 0, again.stdout[-3000:]
    recap = _recap(again.stdout)
    assert set(recap) == set(HOSTS)
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in recap.values()), recap


def test_a_first_deploy_and_a_good_release_reach_every_host_one_by_one(fleet: Fleet) -> None:
    for tag in ("v1", "v2"):
        ro = fleet.rollout(RELEASES[tag])
        assert ro.returncode == 0, ro.output[-5000:]
        assert _deploy_task_hosts(ro.output) == [[h] for h in HOSTS], "one host per batch, in inventory order"
        for host, got in ro.hosts.items():
            assert (got.exit_code, got.outcome, got.serving) == (0, "deployed", tag), (host, got)
            assert got.revision == fleet.revs[tag]
        assert ro.ok(fleet.revs)
        assert all(r["changed"] >= 1 and r["failed"] == 0 for r in _recap(ro.output).values())
    for host in HOSTS:
        assert fleet.lb_log(host) == ["out", "in", "out", "in"], "out of the load balancer and back, per deploy"
    # Deploying what serves is nothing to do: ok, not changed, and the service is not touched.
    pids = {h: fleet.main_pid(h) for h in HOSTS}
    same = fleet.rollout(FleetRelease("v2", "again", RELEASES["v2"].expect))
    assert same.returncode == 0, same.output[-3000:]
    assert all(got.outcome == "nothing-to-do" for got in same.hosts.values()), same.hosts
    assert re.search(r"^ok: \[web1\]", same.output.split("TASK [Deploy the release, guarded]")[1], flags=re.M)
    assert {h: fleet.main_pid(h) for h in HOSTS} == pids


def test_a_release_that_fails_readiness_is_rolled_back_on_the_first_host_and_stops_the_rollout(fleet: Fleet) -> None:
    pids = {h: fleet.main_pid(h) for h in HOSTS}
    lb_before = {h: fleet.lb_log(h) for h in HOSTS}
    ro = fleet.rollout(RELEASES["v4-db-down"])
    assert ro.returncode != 0, "the run fails: not every host deployed"
    web1 = ro.hosts["web1"]
    assert (web1.exit_code, web1.outcome, web1.serving) == (4, "rolled-back", "v2"), web1
    assert web1.revision == fleet.revs["v2"], "the module reports the release serving after the rollback"
    for host in ("web2", "web3"):
        assert (ro.hosts[host].exit_code, ro.hosts[host].serving) == (None, "v2")
        assert fleet.main_pid(host) == pids[host], f"{host} was never touched"
        assert fleet.lb_log(host) == lb_before[host], f"{host} never left the load balancer"
    # Rolled back, healthy: the host went back into the load balancer.
    assert fleet.lb_log("web1") == [*lb_before["web1"], "out", "in"]
    summary = json.loads((fleet.workdir / "summary-v4-db-down.json").read_text())
    assert summary["web1"]["rolled_back"] is True and summary["web1"]["needs_human"] is False
    assert summary["web2"] is None and summary["web3"] is None
    assert "web2: not reached" in ro.output and "web1: rolled-back (exit 4), rolled back" in ro.output
    assert ro.ok(fleet.revs)


def test_a_release_refused_by_the_import_check_changes_nothing_anywhere(fleet: Fleet) -> None:
    pids = {h: fleet.main_pid(h) for h in HOSTS}
    ro = fleet.rollout(RELEASES["v3-broken-import"])
    assert ro.returncode != 0
    web1 = ro.hosts["web1"]
    assert (web1.exit_code, web1.outcome, web1.serving) == (3, "refused", "v2"), web1
    summary = json.loads((fleet.workdir / "summary-v3-broken-import.json").read_text())
    assert summary["web1"]["failed"] and not summary["web1"]["rolled_back"] and not summary["web1"]["needs_human"]
    assert "import" in summary["web1"]["message"].lower(), summary["web1"]
    assert {h: fleet.main_pid(h) for h in HOSTS} == pids, "no service was restarted anywhere"
    assert all(got.serving == "v2" for got in ro.hosts.values())
    assert ro.ok(fleet.revs)


def test_check_mode_is_a_dry_run_and_diff_mode_shows_the_revision_change(fleet: Fleet) -> None:
    pids = {h: fleet.main_pid(h) for h in HOSTS}
    extra = {
        "unitctl_service": NAME, "unitctl_rev": fleet.revs["v5"], "unitctl_repo": f"{BASE}/app",
        "unitctl_ready_url": "http://127.0.0.1:8000/health/ready",
    }  # fmt: skip
    proc = fleet.playbook("rolling-deploy.yml", extra, "--check", "--diff", "--limit", "web1")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    deploy = proc.stdout.split("TASK [Deploy the release, guarded]")[1].split("\nTASK [", 1)[0]
    assert f"revision: {fleet.revs['v2']} -> {fleet.revs['v5']}" in deploy, deploy
    assert re.search(r"^changed: \[web1\]", deploy, flags=re.M), deploy
    assert {h: fleet.main_pid(h) for h in HOSTS} == pids
    assert fleet.serving("web1") == "v2"
