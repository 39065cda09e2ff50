"""The rolling-deploy playbook's decisions, with the real ansible-playbook and module over a stand-in unitctl.

The real fleet test (tests/integration/test_fleet_real.py) cannot make a rollback fail (exit 5) on purpose, nor needs
batches of more than one host: here a stand-in for unitctl answers each host with the exit code and result object a
real one prints, on local "hosts", so the playbook's handling of 5 and of batches is checked too.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO_ROOT / "ansible" / "playbooks" / "rolling-deploy.yml"
HOSTS = ("h1", "h2", "h3", "h4")

STAND_IN = """#!/bin/sh
# unitctl as the playbook sees it: the exit code and --json result object of a real one, per host.
host=""
for arg in "$@"; do case $arg in --history-dir=*) host=${arg#*/hist-} ;; esac; done
echo "$host deploy" >> "$LOG"
code=$(sed -n "s/^$host=//p" "$CODES")
case $code in
  0) outcome=ok message="deployed bbbb" ;;
  3) outcome=refused message="refused: the import check failed" ;;
  4) outcome=rolled-back message="not ready; rolled back to aaaa" ;;
  5) outcome=rollback-failed message="not ready and the rollback failed" ;;
esac
printf '{"unit": "x.service", "command": "apply", "outcome": "%s", "exit_code": %s, "message": "%s", "plan": null, ' \\
  "$outcome" "$code" "$message"
printf '"record": {"from_rev": "aaaa", "to_rev": "bbbb"}}\\n'
exit "$code"
"""


def _run(tmp_path: Path, codes: dict[str, int], *extra: str) -> tuple[int, str, list[str], dict[str, Any]]:
    """Run the playbook on four local hosts; return (exit, output, the calls log, the JSON summary)."""
    unitctl = tmp_path / "unitctl"
    unitctl.write_text(STAND_IN)
    unitctl.chmod(unitctl.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "codes").write_text("".join(f"{h}={c}\n" for h, c in codes.items()))
    log = tmp_path / "calls"
    log.write_text("")
    for hook, word in (("out", "out"), ("in", "in")):
        (tmp_path / f"lb-{hook}.yml").write_text(
            f"- name: Record the load balancer {word}\n"
            f"  ansible.builtin.shell: echo '{{{{ inventory_hostname }}}} {word}' >> {log}\n"
            "  changed_when: true\n"
        )
    (tmp_path / "inventory.ini").write_text(
        "[app]\n"
        + "\n".join(HOSTS)
        + f"\n\n[app:vars]\nansible_connection=local\nansible_python_interpreter={sys.executable}\n"
    )
    collections = tmp_path / "collections"
    (collections / "ansible_collections" / "unitctl").mkdir(parents=True)
    (collections / "ansible_collections" / "unitctl" / "deploy").symlink_to(REPO_ROOT / "ansible")
    summary = tmp_path / "summary.json"
    extra_vars = {
        "unitctl_rev": "bbbb", "unitctl_service": "x", "unitctl_repo": str(tmp_path), "unitctl_become": False,
        "unitctl_ready_url": "http://127.0.0.1:9/ready", "unitctl_path": str(unitctl),
        "unitctl_extra_args": ["--history-dir=/nonexistent/hist-{{ inventory_hostname }}"],
        "unitctl_lb_out_tasks": str(tmp_path / "lb-out.yml"), "unitctl_lb_in_tasks": str(tmp_path / "lb-in.yml"),
        "unitctl_summary_json": str(summary),
    }  # fmt: skip
    proc = subprocess.run(
        [
            str(Path(sys.prefix) / "bin" / "ansible-playbook"), "-i", str(tmp_path / "inventory.ini"), str(PLAYBOOK),
            "-e", json.dumps(extra_vars), *extra,
        ],
        env={
            "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8", "ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"), "LOG": str(log), "CODES": str(tmp_path / "codes"),
        },
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    data = json.loads(summary.read_text()) if summary.exists() else {}
    return proc.returncode, proc.stdout + proc.stderr, log.read_text().splitlines(), data


def test_a_failed_rollback_keeps_the_host_out_of_the_load_balancer_and_stops_the_rollout(tmp_path: Path) -> None:
    rc, out, calls, summary = _run(tmp_path, {"h1": 0, "h2": 5, "h3": 0, "h4": 0})
    assert rc != 0
    assert calls == ["h1 out", "h1 deploy", "h1 in", "h2 out", "h2 deploy"], "h2 stays out; h3, h4 untouched"
    assert summary["h2"]["needs_human"] is True and summary["h2"]["outcome"] == "rollback-failed"
    assert summary["h3"] is None and summary["h4"] is None
    assert "h2: rollback-failed (exit 5), A HUMAN IS NEEDED" in out
    assert "h2 did not deploy (h2: A HUMAN IS NEEDED); not reached: h3, h4" in out


@pytest.mark.parametrize("code", [3, 4])
def test_a_refused_or_rolled_back_host_goes_back_in_and_stops_the_rollout(tmp_path: Path, code: int) -> None:
    rc, out, calls, summary = _run(tmp_path, {"h1": code, "h2": 0, "h3": 0, "h4": 0})
    assert rc != 0
    assert calls == ["h1 out", "h1 deploy", "h1 in"], "the previous release serves: back in; nobody after it"
    assert summary["h1"]["exit_code"] == code and summary["h1"]["rolled_back"] is (code == 4)
    assert summary["h1"]["revision"] == "aaaa", "the release serving after it"
    assert [summary[h] for h in ("h2", "h3", "h4")] == [None, None, None]


def test_a_batch_finishes_and_goes_back_in_before_the_rollout_stops(tmp_path: Path) -> None:
    rc, out, calls, summary = _run(tmp_path, {"h1": 0, "h2": 0, "h3": 4, "h4": 0}, "-e", "unitctl_serial=2")
    assert rc != 0
    assert sorted(calls[:6]) == sorted(f"{h} {s}" for h in ("h1", "h2") for s in ("out", "deploy", "in"))
    assert sorted(calls[6:]) == sorted(f"{h} {s}" for h in ("h3", "h4") for s in ("out", "deploy", "in"))
    assert summary["h3"]["outcome"] == "rolled-back" and summary["h4"]["outcome"] == "deployed"
    assert "the rollout stopped: h3 did not deploy" in out
