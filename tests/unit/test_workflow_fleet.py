"""examples/github/deploy-ansible.yml and deploy-fleet-matrix.yml: actionlint-clean, shellcheck-clean run steps,
and the rolling promises they make (one host at a time, the first failure stops the rest, the exact sha).

Validated as test_workflow.py validates deploy.yml, with its actionlint runner and run-step extraction.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_workflow import _run_blocks, lint

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_WF = REPO_ROOT / "examples" / "github" / "deploy-ansible.yml"
MATRIX_WF = REPO_ROOT / "examples" / "github" / "deploy-fleet-matrix.yml"
PLAYBOOK = REPO_ROOT / "ansible" / "playbooks" / "rolling-deploy.yml"


@pytest.mark.parametrize("workflow", [ANSIBLE_WF, MATRIX_WF], ids=lambda p: p.name)
def test_the_fleet_workflows_pass_actionlint(workflow: Path) -> None:
    proc = lint(workflow)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Checking 1 workflow file(s)" in proc.stdout and "passed lint checks" in proc.stdout


@pytest.mark.parametrize(
    ("workflow", "old", "new", "finding"),
    [
        (MATRIX_WF, "${{ matrix.host }} with", "${{ matrix.hosts }} with", 'property "hosts" is not defined'),
        (ANSIBLE_WF, "REV: ${{ github.sha }}", "REV: ${{ github.shaa }}", 'property "shaa" is not defined'),
    ],
)
def test_actionlint_catches_a_broken_fleet_workflow(
    tmp_path: Path, workflow: Path, old: str, new: str, finding: str
) -> None:
    text = workflow.read_text()
    assert old in text, f"{workflow.name} no longer contains {old!r}: update this test"
    broken = tmp_path / workflow.name
    broken.write_text(text.replace(old, new, 1))
    proc = lint(broken)
    assert proc.returncode == 1 and finding in proc.stdout, proc.stdout


@pytest.mark.parametrize("workflow", [ANSIBLE_WF, MATRIX_WF], ids=lambda p: p.name)
def test_every_run_step_passes_shellcheck(tmp_path: Path, workflow: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed: run scripts/bootstrap.sh"
    blocks = _run_blocks(workflow.read_text())
    assert len(blocks) >= 4
    for n, block in enumerate(blocks):
        script = tmp_path / f"step{n}.sh"
        script.write_text("#!/bin/bash\nset -e\n" + block + "\n")
        proc = subprocess.run([shellcheck, "--shell=bash", str(script)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{workflow.name} run: step {n}:\n{block}\n{proc.stdout}"


def test_the_matrix_deploys_one_server_at_a_time_and_stops_at_the_first_failure() -> None:
    wf = yaml.safe_load(MATRIX_WF.read_text())
    deploy = wf["jobs"]["deploy"]
    assert deploy["needs"] == "test"
    assert deploy["strategy"]["max-parallel"] == 1 and deploy["strategy"]["fail-fast"] is True
    assert wf["concurrency"] == {"group": "deploy-production", "cancel-in-progress": False}
    assert "concurrency" not in deploy, "per matrix job, a pending job of the group would be replaced"
    text = MATRIX_WF.read_text()
    assert "REV: ${{ github.sha }}" in text and '"$DEPLOY_USER@$DEPLOY_HOST" "$REV"' in text
    assert "StrictHostKeyChecking=yes" in text


def test_the_ansible_workflow_runs_the_collections_playbook_on_the_exact_sha() -> None:
    wf = yaml.safe_load(ANSIBLE_WF.read_text())
    deploy = wf["jobs"]["deploy"]
    assert deploy["needs"] == "test" and deploy["concurrency"]["cancel-in-progress"] is False
    text = ANSIBLE_WF.read_text()
    assert "unitctl/ansible/playbooks/rolling-deploy.yml" in text and PLAYBOOK.exists()
    assert '-e unitctl_rev="$REV"' in text and "REV: ${{ github.sha }}" in text
    # The summary file the step reads is the one the playbook writes.
    assert "unitctl_summary_json" in text and "unitctl_summary_json" in PLAYBOOK.read_text()
    step = text[text.index("token=$(") : text.index('exit "$rc"')]
    assert step.index('"::stop-commands::$token"') < step.index("ansible-playbook") < step.index('"::$token::"')


@pytest.mark.parametrize("workflow", [ANSIBLE_WF, MATRIX_WF], ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit(workflow: Path) -> None:
    uses = re.findall(r"uses: (\S+)", workflow.read_text())
    assert uses
    for use in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", use), f"{use} is not pinned by a full commit hash"
