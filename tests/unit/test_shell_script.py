"""update_systemd_unit.sh: shellcheck-clean, --help, argument errors, and how it drives unitctl.

Argument building and exit-code pass-through are checked here against a recording stand-in for
unitctl (no systemd needed: every call passes --unit-file, so the script never asks systemctl);
tests/integration/test_update_script_real.py runs the script against real systemd and unitctl.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gitcmd import git

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "update_systemd_unit.sh"

FAKE_UNITCTL = r"""#!/usr/bin/env bash
# Records each call, rewrites like 'unitctl rewrite --in-place' would (appends a marker), exits as told.
set -euo pipefail
printf '%s\n' "$*" >>"$FAKE_LOG"
case $1 in
  rewrite)
    echo "# rewritten by fake" >>"$2"
    exit "${FAKE_REWRITE_RC:-0}"
    ;;
  fetch)
    # The real one: it runs git as the checkout's owner.
    exec "$REAL_UNITCTL" "$@"
    ;;
  apply)
    while [ "$#" -gt 0 ]; do
      if [ "$1" = --unit-file ]; then cp "$2" "$FAKE_SEEN"; fi
      shift
    done
    echo "fake apply stdout line"
    if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
      echo "### fake summary (GITHUB_ACTIONS=$GITHUB_ACTIONS)" >>"$GITHUB_STEP_SUMMARY"
    fi
    exit "${FAKE_APPLY_RC:-0}"
    ;;
esac
exit 99
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
    return {"unitctl": unitctl, "unit": unit, "repo": repo, "log": tmp_path / "calls.log", "seen": tmp_path / "seen"}


def run(args: list[str], fake: dict[str, Path] | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "UNITCTL"))}
    if fake is not None:
        full_env.update(
            {
                "FAKE_LOG": str(fake["log"]),
                "FAKE_SEEN": str(fake["seen"]),
                "TMPDIR": str(fake["repo"].parent),
                "REAL_UNITCTL": str(Path(sys.prefix) / "bin" / "unitctl"),
            }
        )
    full_env.update(env)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full_env, timeout=30, check=False
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
    broken.write_text(SCRIPT.read_text().replace('cp -- "$unit_file" "$candidate"', "cp -- $unit_file $candidate"))
    proc = subprocess.run([shellcheck, str(broken)], capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "SC2086" in proc.stdout


def test_the_script_is_executable_and_strict() -> None:
    assert os.access(SCRIPT, os.X_OK)
    assert "set -euo pipefail" in SCRIPT.read_text()


def test_help_explains_usage_and_exit_codes() -> None:
    proc = run(["--help"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: update_systemd_unit.sh SERVICE")
    for text in ("--rev REV", "--workers N|auto", "--unitctl PATH", "4 the release failed, rolled back", "--opt=VALUE"):
        assert text in proc.stdout
    assert proc.stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no SERVICE given"),
        (["--workers"], "--workers needs a value"),
        (["app", "extra"], "unexpected argument 'extra'"),
        (["a b"], "'a b' is not a service name"),
        (["app", "--workers", "0"], "--workers must be a positive number or 'auto', not '0'"),
        (["app", "--workers=lots"], "--workers must be a positive number or 'auto', not 'lots'"),
        (["app", "--ready-timeout", "soon"], "--ready-timeout must be a number of seconds"),
        (["app", "--rev", "abc"], "--rev needs --repo DIR"),
        (["app", "--fetch"], "--fetch needs --repo DIR"),
        (["app", "--repo", "/no/such/dir"], "--repo /no/such/dir: no such directory"),
        (["app", "--ready-url"], "--ready-url needs a value"),
        (["app", "--unit-file", "/no/such.service"], "--unit-file /no/such.service: no such file"),
        (["app", "--unit-file", "/etc/hostname", "--unitctl", "/no/unitctl"], "unitctl not found at /no/unitctl"),
    ],
)
def test_bad_arguments_fail_with_one_line_and_exit_2(
    args: list[str], message: str, fake: dict[str, Path], tmp_path: Path
) -> None:
    args = [a.replace("REPO", str(fake["repo"])) for a in args]
    if "--unitctl" not in args:
        args += ["--unitctl", str(fake["unitctl"])]
    proc = run(args, fake)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("update_systemd_unit.sh: error: "), proc.stderr
    assert message in lines[0]
    assert proc.stdout == ""
    assert calls(fake) == [], "nothing may run after a usage error"
    assert fake["unit"].read_text() == UNIT


def test_in_github_actions_an_argument_error_is_also_an_annotation(fake: dict[str, Path]) -> None:
    proc = run(["app", "--workers", "100%"], fake, GITHUB_ACTIONS="true")
    assert proc.returncode == 2
    assert "::error title=update_systemd_unit.sh::--workers must be a positive number or 'auto', not '100%25'" in (
        proc.stderr
    )


def test_rewrites_a_copy_then_runs_the_guarded_apply_with_everything(fake: dict[str, Path]) -> None:
    proc = run(
        [
            "demoapp.service", "--unit-file", str(fake["unit"]), "--unitctl", str(fake["unitctl"]),
            "--repo", str(fake["repo"]), "--rev", "0123abc", "--ready-url", "http://127.0.0.1:8000/health/ready",
            "--ready-timeout", "20", "--workers", "auto", "--json", "--strategy=auto", "--", "--build-cmd", "make x",
        ],
        fake,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rewrite, apply = calls(fake)
    candidate = rewrite.split()[1]
    assert Path(candidate).name == "demoapp.service", "the copy keeps the unit's name for verification"
    assert rewrite == f"rewrite {candidate} --no-preload --strict --workers auto --in-place"
    assert apply == (
        f"apply demoapp --guarded --unit-file {candidate} --repo {fake['repo']} --rev 0123abc "
        "--ready-url http://127.0.0.1:8000/health/ready --ready-timeout 20 --json --strategy=auto --build-cmd make x"
    )
    assert fake["seen"].read_text() == UNIT + "# rewritten by fake\n", "apply gets the rewritten copy"
    assert fake["unit"].read_text() == UNIT, "the installed unit is never edited in place"
    assert not Path(candidate).parent.exists(), "the temporary copy is removed"
    assert proc.stdout == "fake apply stdout line\n"


def test_keep_preload_and_no_workers_means_no_rewrite(fake: dict[str, Path]) -> None:
    proc = run(["demoapp", "--unit-file", str(fake["unit"]), "--unitctl", str(fake["unitctl"]), "--keep-preload"], fake)
    assert proc.returncode == 0, proc.stderr
    (apply,) = calls(fake)
    assert apply.startswith("apply demoapp --guarded --unit-file ")
    assert fake["seen"].read_text() == UNIT


@pytest.mark.parametrize("code", [0, 1, 3, 4, 5])
def test_unitctl_apply_exit_codes_pass_through_unchanged(code: int, fake: dict[str, Path]) -> None:
    proc = run(
        ["demoapp", "--unit-file", str(fake["unit"]), "--unitctl", str(fake["unitctl"])], fake, FAKE_APPLY_RC=str(code)
    )
    assert proc.returncode == code, proc.stderr


def test_a_failed_rewrite_stops_before_apply_with_its_code(fake: dict[str, Path]) -> None:
    proc = run(
        ["demoapp", "--unit-file", str(fake["unit"]), "--unitctl", str(fake["unitctl"])], fake, FAKE_REWRITE_RC="3"
    )
    assert proc.returncode == 3
    assert [c.split()[0] for c in calls(fake)] == ["rewrite"]


def test_a_failed_fetch_is_refused_before_apply(fake: dict[str, Path], tmp_path: Path) -> None:
    repo = fake["repo"]
    git(repo.parent, "init", "-q", str(repo))
    args = ["demoapp", "--unit-file", str(fake["unit"]), "--unitctl", str(fake["unitctl"]), "--repo", str(repo)]
    proc = run([*args, "--fetch", "--remote", "nosuchremote"], fake)
    assert proc.returncode == 3
    assert "git fetch from nosuchremote" in proc.stderr and "nothing was changed" in proc.stderr
    assert "unitctl: error: git fetch --quiet --tags -- nosuchremote failed" in proc.stderr
    assert calls(fake)[1:] == [f"fetch {repo} --remote nosuchremote"], "no apply after a failed fetch"


def test_fetch_brings_the_revision_before_apply(fake: dict[str, Path], tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    git(tmp_path, "init", "-q", str(origin))
    git(origin, "commit", "-q", "--allow-empty", "-m", "one")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    git(origin, "commit", "-q", "--allow-empty", "-m", "two")
    new = git(origin, "rev-parse", "HEAD").strip()
    args = ["demoapp", "--unit-file", str(fake["unit"]), "--unitctl", str(fake["unitctl"]), "--repo", str(clone)]
    proc = run([*args, "--fetch", "--rev", new], fake)
    assert proc.returncode == 0, proc.stderr
    git(clone, "cat-file", "-e", new)  # raises unless the clone has the revision
    assert calls(fake)[1] == f"fetch {clone} --remote origin"
    assert calls(fake)[-1].endswith(f"--rev {new}")


def test_summary_stdout_sends_the_summary_to_stdout_and_the_rest_to_stderr(fake: dict[str, Path]) -> None:
    proc = run(
        ["demoapp", "--unit-file", str(fake["unit"]), "--unitctl", str(fake["unitctl"]), "--summary-stdout"],
        fake,
        FAKE_APPLY_RC="4",
    )
    assert proc.returncode == 4
    assert proc.stdout == "### fake summary (GITHUB_ACTIONS=true)\n"
    assert "fake apply stdout line" in proc.stderr


def test_a_failed_rewrite_is_reported_to_github_actions(fake: dict[str, Path], tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    proc = run(
        ["demoapp", "--unit-file", str(fake["unit"]), "--unitctl", str(fake["unitctl"])],
        fake,
        FAKE_REWRITE_RC="3",
        GITHUB_ACTIONS="true",
        GITHUB_STEP_SUMMARY=str(summary),
    )
    assert proc.returncode == 3
    assert "::error title=update_systemd_unit.sh::unitctl rewrite of demoapp.service exited 3" in proc.stderr
    assert summary.read_text().startswith("### ❌ update_systemd_unit.sh demoapp.service: unitctl rewrite of")
