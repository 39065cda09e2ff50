"""The FastAPI variant of the example app (examples/app/asgi.py), rendered with --worker-class
uvicorn_worker.UvicornWorker and deployed for real: a good release, a broken import refused before the switch,
a release whose database is gone refused by its canary (and, without one, rolled back); the guard reads readiness
from Uvicorn workers as from sync ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from unitctl.sandbox import Sandbox

pytestmark = pytest.mark.systemd

REPO_ROOT = Path(__file__).resolve().parents[2]
MAKE_RELEASES = REPO_ROOT / "examples" / "app" / "make_releases.py"
BASE = "/srv/fastapi"
NAME = "demoapi"
PORT = 8141
DB_URL = f"sqlite:///{BASE}/data/app.db"


def _served(box: Sandbox) -> str:
    code = (
        f"import json, urllib.request; print(json.load(urllib.request.urlopen('http://127.0.0.1:{PORT}/'))['release'])"
    )
    r = box.run([f"{sys.prefix}/bin/python", "-c", code])
    return r.stdout.strip() if r.ok else "no answer"


def _apply(box: Sandbox, venv_bin: Path, rev: str, *extra: str) -> tuple[int, str]:
    r = box.run(
        [
            "env", "-C", "/srv", str(venv_bin / "unitctl"), "apply", NAME, "--guarded", "--repo", f"{BASE}/app",
            "--rev", rev, "--ready-url", f"http://127.0.0.1:{PORT}/health/ready", "--ready-timeout", "10",
            "--ready-interval", "0.2", "--history-dir", f"{BASE}/history", *extra,
        ],
        timeout=120,
    )  # fmt: skip
    return r.returncode, r.stderr


def test_a_fastapi_app_on_uvicorn_workers_is_deployed_refused_and_rolled_back(box: Sandbox, venv_bin: Path) -> None:
    py = f"{sys.prefix}/bin/python"
    built = box.run([py, str(MAKE_RELEASES), f"{BASE}/app", "--json"], check=True)
    revs = {rel["tag"]: rel["rev"] for rel in json.loads(built.stdout)["releases"]}
    box.run(["mkdir", "-p", f"{BASE}/data"], check=True)
    box.run([py, f"{BASE}/app/initdb.py"], env={"DATABASE_URL": DB_URL}, check=True)
    unit = f"{BASE}/{NAME}.service"
    rendered = box.run(
        [
            str(venv_bin / "unitctl"), "render", "--name", NAME, "--app", "asgi:app",
            "--worker-class", "uvicorn_worker.UvicornWorker", "--workers", "2", "--working-dir", f"{BASE}/app",
            "--venv", sys.prefix, "--bind", f"127.0.0.1:{PORT}", "--env", f"DATABASE_URL={DB_URL}", "-o", unit,
        ],
        check=True,
    )  # fmt: skip
    assert "--worker-class uvicorn_worker.UvicornWorker" in box.read_file(unit).decode(), rendered.stderr

    code, err = _apply(box, venv_bin, revs["v1"], "--unit-file", unit)
    assert code == 0, err
    assert _served(box) == "v1"
    # Uvicorn workers answer (Gunicorn's sync worker says "gunicorn" and could not run an ASGI app at all).
    code_ = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{PORT}/health').headers['server'])"
    assert box.run([py, "-c", code_], check=True).stdout.strip() == "uvicorn"

    code, err = _apply(box, venv_bin, revs["v2"])
    assert code == 0, err
    assert _served(box) == "v2"

    code, err = _apply(box, venv_bin, revs["v3-broken-import"])
    assert code == 3, err
    assert "pydantic" in err.lower() or "BaseSettings" in err, err
    assert _served(box) == "v2"

    # The canary (one Uvicorn worker on its own socket) refuses it before the live service is touched ...
    code, err = _apply(box, venv_bin, revs["v4-db-down"])
    assert code == 3 and "the canary of" in err and "the live service was not touched" in err, err
    assert _served(box) == "v2"
    # ... and without the canary the guard after the switch catches it and rolls back.
    code, err = _apply(box, venv_bin, revs["v4-db-down"], "--no-canary")
    assert code == 4, err
    assert _served(box) == "v2"
