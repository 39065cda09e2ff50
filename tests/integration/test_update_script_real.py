"""update_systemd_unit.sh (which execs unitctl deploy) against real systemd, Gunicorn and git: the example app's
releases, one by one.

The checkout is a clone holding only v1 (as a server is set up); each deploy fetches and deploys an exact
commit hash, as the GitHub workflow does. Checked after each: the exit code, the release actually served,
whether the service was restarted, the checkout's HEAD, the installed unit, and the step summary.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from unitctl.sandbox import Result, Sandbox

pytestmark = pytest.mark.systemd

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "update_systemd_unit.sh"
MAKE_RELEASES = REPO_ROOT / "examples" / "app" / "make_releases.py"
BASE = "/srv/uss"
NAME = "demoapp-uss"
PORT = 8101
SUMMARY = "/srv/summary.md"
READY_TIMEOUT = 8


def _setup(box: Sandbox) -> dict[str, str]:
    """Build the releases inside the container and create the database; the unit is not installed yet."""
    py = f"{sys.prefix}/bin/python"
    db_url = f"sqlite:///{BASE}/data/app.db"
    built = box.run(
        [
            py, str(MAKE_RELEASES), f"{BASE}/app", "--origin", f"{BASE}/origin", "--json",
            "--unit-out", f"{BASE}/{NAME}.service", "--venv", sys.prefix, "--port", str(PORT), "--database-url", db_url,
        ],
        check=True,
    )  # fmt: skip
    revs = {r["tag"]: r["rev"] for r in json.loads(built.stdout)["releases"]}
    box.run([py, f"{BASE}/app/initdb.py"], env={"DATABASE_URL": db_url}, check=True)
    return revs


def _deploy(box: Sandbox, venv_bin: Path, rev: str, *extra: str, env: dict[str, str] | None = None) -> Result:
    if box.exists(SUMMARY):
        box.host_path(SUMMARY).unlink()
    return box.run(
        [
            "bash", str(SCRIPT), NAME, "--repo", f"{BASE}/app", "--fetch", "--rev", rev,
            "--ready-url", f"http://127.0.0.1:{PORT}/health/ready", "--ready-timeout", str(READY_TIMEOUT),
            "--workers", "2", "--unitctl", str(venv_bin / "unitctl"), f"--history-dir={BASE}/history", *extra,
        ],
        env=env if env is not None else {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": SUMMARY},
        timeout=READY_TIMEOUT + 90,
    )  # fmt: skip


def _served(box: Sandbox) -> str:
    """Return the release the service answers `/` with, or the error."""
    code = (
        "import json, urllib.request\n"
        f"print(json.load(urllib.request.urlopen('http://127.0.0.1:{PORT}/', timeout=5))['release'])"
    )
    r = box.run([f"{sys.prefix}/bin/python", "-c", code])
    return r.stdout.strip() if r.ok else f"no answer: {r.stderr.strip().splitlines()[-1:]}"


def _head(box: Sandbox) -> str:
    return box.run(["git", "-C", f"{BASE}/app", "rev-parse", "HEAD"], check=True).stdout.strip()


def _main_pid(box: Sandbox) -> str:
    return box.unit_properties(f"{NAME}.service", "MainPID")["MainPID"]


def _summary(box: Sandbox) -> str:
    return box.read_file(SUMMARY).decode()


def test_the_script_deploys_refuses_and_rolls_back_the_example_releases(box: Sandbox, venv_bin: Path) -> None:
    revs = _setup(box)
    assert box.run(["git", "-C", f"{BASE}/app", "cat-file", "-e", revs["v2"]]).returncode != 0, "v2 must need a fetch"

    # v1: the first deploy starts from the unit file (nothing is installed yet); it is rewritten
    # (no --preload, 2 workers) and installed by apply. Later deploys start from the installed unit.
    assert not box.exists(f"/etc/systemd/system/{NAME}.service")
    r = _deploy(box, venv_bin, revs["v1"], "--unit-file", f"{BASE}/{NAME}.service")
    assert r.returncode == 0, r.stderr
    assert _served(box) == "v1"
    unit = box.read_file(f"/etc/systemd/system/{NAME}.service").decode()
    (exec_start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert exec_start == (
        f"ExecStart={sys.prefix}/bin/gunicorn --workers 2 --bind 127.0.0.1:{PORT} --access-logfile - wsgi:application"
    )
    assert "Environment=DATABASE_URL=" in unit, "everything but the Gunicorn command line is kept"
    summary = _summary(box)
    assert f"### ✅ unitctl deploy {NAME}.service: deployed (exit 0)" in summary
    assert f"| revision deployed | `{revs['v1'][:12]}` |" in summary
    assert "::error" not in r.stderr

    # v2: a good release.
    pid_v1 = _main_pid(box)
    r = _deploy(box, venv_bin, revs["v2"])
    assert r.returncode == 0, r.stderr
    assert _served(box) == "v2"
    assert _main_pid(box) == pid_v1, "a code-only release is a graceful reload (HUP) by default: the same master"
    assert f"| rollback target | `{revs['v1'][:12]}` (chosen from history) |" in _summary(box)

    # v3: the import fails in the pre-import check: refused, the running v2 never restarted,
    # the checkout back at v2. This run reports the way an SSH job gets it: the summary on stdout.
    pid_v2 = _main_pid(box)
    r = _deploy(box, venv_bin, revs["v3-broken-import"], "--summary-stdout", env={})
    assert r.returncode == 3, r.stderr
    assert _served(box) == "v2"
    assert _main_pid(box) == pid_v2, "a refused deploy must not restart the service"
    assert _head(box) == revs["v2"]
    assert r.stdout.startswith(f"### ❌ unitctl deploy {NAME}.service: refused, nothing changed (exit 3)")
    assert "PydanticImportError: `BaseSettings` has been moved to the `pydantic-settings` package" in r.stdout
    assert f"::error title=unitctl deploy {NAME}.service%3A refused%2C nothing changed::" in r.stderr

    # v4: imports, but /health/ready is 503 forever: its canary refuses it (exit 3), v2 never restarted.
    r = _deploy(box, venv_bin, revs["v4-db-down"])
    assert r.returncode == 3, r.stderr
    assert _served(box) == "v2" and _main_pid(box) == pid_v2 and _head(box) == revs["v2"]
    summary = _summary(box)
    assert "refused, nothing changed (exit 3)" in summary and "| canary |" in summary, summary
    assert "unable to open database file" in summary, "the canary's 503 reason reaches the summary"

    # The same release with --no-canary (passed through to unitctl): rolled back to v2 (exit 4), v2 serving.
    r = _deploy(box, venv_bin, revs["v4-db-down"], "--no-canary")
    assert r.returncode == 4, r.stderr
    assert _served(box) == "v2"
    assert _head(box) == revs["v2"]
    summary = _summary(box)
    assert "failed and rolled back (exit 4)" in summary
    assert f"| revision attempted | `{revs['v4-db-down'][:12]}` |" in summary
    assert f"| rollback target | `{revs['v2'][:12]}` (chosen from history) |" in summary
    assert "| guard |" in summary and "**FAILED**" in summary and "| rollback-guard |" in summary
    assert "unable to open database file" in summary, "the 503 reason reaches the summary"
    assert f"journal of {NAME}.service" in summary
    assert f"::error title=unitctl deploy {NAME}.service%3A failed and rolled back::" in r.stderr

    # v5: good again.
    r = _deploy(box, venv_bin, revs["v5"])
    assert r.returncode == 0, r.stderr
    assert _served(box) == "v5"
    assert _head(box) == revs["v5"]

    # Deploying what is running changes nothing and says so.
    pid_v5 = _main_pid(box)
    r = _deploy(box, venv_bin, revs["v5"])
    assert r.returncode == 0, r.stderr
    assert _main_pid(box) == pid_v5
    assert "nothing to do" in _summary(box)


def test_a_service_that_is_not_installed_is_refused(box: Sandbox, venv_bin: Path) -> None:
    r = box.run(["bash", str(SCRIPT), "no-such-app", "--unitctl", str(venv_bin / "unitctl")], timeout=60)
    assert r.returncode == 3
    assert r.stderr.strip() == (
        "unitctl: error: no-such-app.service is not installed (LoadState=not-found); "
        "install it first or pass --unit-file FILE"
    )
