"""The fleet demo's pure parts: what it shows of a playbook run, its table, and its verdict per rollout."""

from __future__ import annotations

from unitctl.fleetdemo import ROLLOUTS, HostOutcome, Rollout, deploy_lines, table

OUTPUT = """TASK [Deploy the release, guarded] *********
changed: [web1]
fatal: [web2]: FAILED! => {"changed": false, "msg": "unitctl: rolled-back (exit 4): boom"}
TASK [Put the host back into the load balancer] *****
changed: [web1]
TASK [Every host's outcome] ****
ok: [web1] => {
    "msg": [
        "web1: deployed (exit 0); serves abc: ok",
        "web3: not reached"
    ]
}
"""


def test_the_demo_shows_each_hosts_deploy_and_the_summary_only() -> None:
    assert deploy_lines(OUTPUT) == [
        "changed: [web1]",
        "fatal: [web2]: FAILED! unitctl: rolled-back (exit 4): boom",
        "web1: deployed (exit 0); serves abc: ok",
        "web3: not reached",
    ]
    assert deploy_lines("TASK [Every host's outcome] *\n    \"" + "x" * 300 + '"\n', width=20) == ["x" * 19 + "…"]


def _rollout(tag: str, returncode: int, got: dict[str, tuple[int | None, str]]) -> Rollout:
    release = next(r for r in ROLLOUTS if r.tag == tag)
    ro = Rollout(release, returncode, "")
    for host, (code, serving) in got.items():
        ro.hosts[host] = HostOutcome(code, "x", serving, None, "1")
    return ro


def test_a_rollout_is_as_expected_only_with_every_host_and_the_playbooks_exit_right() -> None:
    stopped = {"web1": (4, "v2"), "web2": (None, "v2"), "web3": (None, "v2")}
    assert _rollout("v4-db-down", 2, stopped).ok({})
    assert not _rollout("v4-db-down", 0, stopped).ok({}), "a green run with a rolled-back host would lie"
    assert not _rollout("v4-db-down", 2, {**stopped, "web2": (0, "v4")}).ok({}), "the rollout must stop"
    assert not _rollout("v2", 0, {"web1": (0, "v2"), "web2": (0, "v2"), "web3": (0, "v1")}).ok({})
    lines = table([_rollout("v4-db-down", 2, {**stopped, "web3": (None, "v4")})], {})
    assert lines[2].split()[:5] == ["v4-db-down", "web1", "4", "x", "v2"] and lines[2].endswith("ok")
    assert "UNEXPECTED (wanted -, v2)" in lines[4]
