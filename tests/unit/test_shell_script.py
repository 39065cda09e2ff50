"""update_systemd_unit.sh: shellcheck-clean, --help, finding unitctl, and passing everything to 'unitctl deploy'.

The script is a wrapper since 'unitctl deploy' does the deploy: what it did in bash (option checks, the rewritten
copy, fetch, apply, annotations and summary) is tested against the Python in tests/unit/test_deploy.py; here its
argument errors come from the real unitctl deploy, its pass-through from a recording stand-in for unitctl.
tests/integration/test_update_script_real.py runs the script against real systemd and unitctl.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "update_systemd_unit.sh"
REAL_UNITCTL = Path(sys.prefix) / "bin" / "unitctl"
BASH = shutil.which("bash") or "/bin/bash"  # by path: some tests run the script with a PATH without unitctl

FAKE_UNITCTL = r"""#!/usr/bin/env bash
# Records each call and exits as told.
set -euo pipefail
printf '%s\n' "$*" >>"$FAKE_LOG"
echo "fake stdout line"
exit "${FAKE_RC:-0}"
"""

UNIT = """[Service]
ExecStart=/venv/bin/gunicorn --preload -w 1 wsgi:application
"""


@pytest.fixture
def fake(tmp_path: Path) -> dict[str, Path]:
    unitctl = tmp_path / "unitctl"
    unitctl.write_text(FAKE_UNITCTL)
    unitctl.chmod(0o755)
    unit = tmp_path / "demoapp.service"
    unit.write_text(UNIT)
    repo = tmp_path / "repo"
    repo.mkdir()
    return {"unitctl": unitctl, "unit": unit, "repo": repo, "log": tmp_path / "calls.log"}


def run(args: list[str], fake: dict[str, Path] | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "UNITCTL"))}
    if fake is not None:
        full_env.update({"FAKE_LOG": str(fake["log"]), "TMPDIR": str(fake["repo"].parent)})
    full_env.update(env)
    return subprocess.run(
        [BASH, str(SCRIPT), *args], capture_output=True, text=True, env=full_env, timeout=30, check=False
    )


def calls(fake: dict[str, Path]) -> list[str]:
    return fake["log"].read_text().splitlines() if fake["log"].exists() else []


def test_shellcheck_finds_nothing() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed: run scripts/bootstrap.sh (apt-get install shellcheck)"
    proc = subprocess.run([shellcheck, "--severity=style", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_would_catch_a_mistake(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed: run scripts/bootstrap.sh"
    broken = tmp_path / "broken.sh"
    text = SCRIPT.read_text()
    assert 'exec "$unitctl_bin" deploy "${args[@]}"' in text
    broken.write_text(text.replace('deploy "${args[@]}"', "deploy ${args[@]}"))
    proc = subprocess.run([shellcheck, str(broken)], capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "SC2068" in proc.stdout


def test_the_script_is_executable_strict_and_short() -> None:
    assert os.access(SCRIPT, os.X_OK)
    text = SCRIPT.read_text()
    assert "set -euo pipefail" in text
    assert len(text.splitlines()) < 100, "a wrapper: the deploy itself is 'unitctl deploy'"


def test_help_is_deploys_help() -> None:
    proc = run(["--help"], UNITCTL=str(REAL_UNITCTL))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: update_systemd_unit.sh [--unitctl PATH] SERVICE")
    text = " ".join(proc.stdout.split())  # the help is wrapped to the terminal's width
    assert "Usage: unitctl deploy [OPTIONS] [SERVICE]" in text
    for needle in ("--rev REV", "--workers N|auto", "--unitctl PATH", "4 the release failed, rolled back"):
        assert needle in text
    assert "--opt=VALUE" in text
    assert proc.stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no SERVICE given"),
        (["--workers"], "Option '--workers' requires an argument"),
        (["app", "extra"], "unexpected argument 'extra'"),
        (["a b"], "'a b.service' is not a valid systemd unit name"),
        (["app", "--workers", "0"], "--workers must be a positive integer or 'auto', not '0'"),
        (["app", "--workers=lots"], "--workers must be a positive integer or 'auto', not 'lots'"),
        (["app", "--ready-timeout", "soon"], "Invalid value for '--ready-timeout'"),
        (["app", "--rev", "abc"], "--rev needs --repo DIR"),
        (["app", "--fetch"], "--fetch needs --repo DIR"),
        (["app", "--repo", "/no/such/dir"], "--repo /no/such/dir: no such directory"),
        (["app", "--ready-url"], "Option '--ready-url' requires an argument"),
        (["app", "--unit-file", "/no/such.service"], "--unit-file /no/such.service: no such file"),
    ],
)
def test_bad_arguments_fail_with_one_line_and_exit_2(args: list[str], message: str, fake: dict[str, Path]) -> None:
    proc = run([*args, "--unitctl", str(REAL_UNITCTL)] if args else ["--unitctl", str(REAL_UNITCTL)], fake)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("unitctl: error: "), proc.stderr
    assert message in lines[0]
    assert proc.stdout == ""
    assert fake["unit"].read_text() == UNIT


def test_unitctl_not_found_is_the_scripts_own_error(fake: dict[str, Path]) -> None:
    proc = run(["app", "--unit-file", str(fake["unit"]), "--unitctl", "/no/unitctl"], fake)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "update_systemd_unit.sh: error: unitctl not found at /no/unitctl; install it (scripts/install-server.sh) "
        "or pass --unitctl PATH"
    ]
    proc = run(["app"], fake, PATH="/nonexistent")
    assert proc.returncode == 2 and "unitctl not found; install it" in proc.stderr


def test_in_github_actions_an_argument_error_is_also_an_annotation(fake: dict[str, Path]) -> None:
    proc = run(["app", "--workers", "100%", "--unitctl", str(REAL_UNITCTL)], fake, GITHUB_ACTIONS="true")
    assert proc.returncode == 2
    assert (
        "::error title=unitctl deploy app.service%3A usage error%2C nothing changed::"
        "--workers must be a positive integer or 'auto', not '100%25'"
    ) in proc.stderr
    proc = run(["app", "--unitctl", "/no/unitctl"], fake, GITHUB_ACTIONS="true")
    assert "::error title=update_systemd_unit.sh::unitctl not found at /no/unitctl" in proc.stderr


def test_everything_but_unitctl_goes_to_deploy_unchanged(fake: dict[str, Path]) -> None:
    args = [
        "demoapp.service", "--unit-file", str(fake["unit"]), "--repo", str(fake["repo"]), "--rev", "0123abc",
        "--ready-url", "http://127.0.0.1:8000/health/ready", "--ready-timeout", "20", "--workers", "auto", "--json",
        "--strategy=auto", "--", "--build-cmd", "make x", "--unitctl", "not-ours-after-dashes",
    ]  # fmt: skip
    proc = run(["--unitctl", str(fake["unitctl"]), *args], fake)
    assert proc.returncode == 0, proc.stderr
    assert calls(fake) == ["deploy " + " ".join(args)]
    assert proc.stdout == "fake stdout line\n"
    proc = run([f"--unitctl={fake['unitctl']}", "app"], fake)
    assert calls(fake)[-1] == "deploy app"
    proc = run(["app", "--fetch"], fake, UNITCTL=str(fake["unitctl"]))
    assert calls(fake)[-1] == "deploy app --fetch"


def test_unitctl_is_found_on_path(fake: dict[str, Path]) -> None:
    proc = run(["app"], fake, PATH=f"{fake['unitctl'].parent}:/usr/bin:/bin")
    assert proc.returncode == 0, proc.stderr
    assert calls(fake) == ["deploy app"]


@pytest.mark.parametrize("code", [0, 1, 2, 3, 4, 5])
def test_unitctl_deploy_exit_codes_pass_through_unchanged(code: int, fake: dict[str, Path]) -> None:
    proc = run(["demoapp", "--unitctl", str(fake["unitctl"])], fake, FAKE_RC=str(code))
    assert proc.returncode == code, proc.stderr
