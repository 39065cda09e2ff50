"""The example app's readiness against a real PostgreSQL (psycopg installed), up and then stopped."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from unitctl import sandbox as sandbox_mod

pytestmark = pytest.mark.systemd

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_DIR = REPO_ROOT / "examples" / "app"
PG_UNIT = "postgresql@15-main.service"
URL = "postgresql://demo:demo-pw-1234@127.0.0.1:5432/demo"


@pytest.fixture(scope="module")
def pg_box(sandbox: sandbox_mod.Sandbox) -> Iterator[sandbox_mod.Sandbox]:
    """A sandbox of its own in which PostgreSQL is not masked (the shared one masks it)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg is not installed: it is a dev dependency, run scripts/bootstrap.sh")
    if not Path("/usr/lib/postgresql/15/bin/postgres").exists():
        pytest.fail("PostgreSQL 15 is not installed on this host (apt-get install postgresql)")
    with sandbox_mod.booted(mask=(), bind_ro=[REPO_ROOT, sys.prefix]) as box:
        box.systemctl("start", PG_UNIT, check=True, timeout=120)
        psql = ["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-c"]
        box.run([*psql, "CREATE ROLE demo LOGIN PASSWORD 'demo-pw-1234'"], check=True)
        box.run([*psql, "CREATE DATABASE demo OWNER demo"], check=True)
        yield box


def ready(box: sandbox_mod.Sandbox) -> tuple[str, dict[str, object]]:
    code = (
        f"import sys, json; sys.path.insert(0, {str(APP_DIR)!r}); import wsgi\n"
        "seen = {}\n"
        "body = b''.join(wsgi.application({'PATH_INFO': '/health/ready', 'REQUEST_METHOD': 'GET'},"
        " lambda s, h: seen.update(status=s)))\n"
        "print(json.dumps([seen['status'], json.loads(body)]))"
    )
    r = box.run([f"{sys.prefix}/bin/python", "-c", code], env={"DATABASE_URL": URL}, check=True, timeout=30)
    status, body = json.loads(r.stdout)
    return status, body


def test_ready_runs_a_query_against_postgresql_and_fails_when_it_is_down(pg_box: sandbox_mod.Sandbox) -> None:
    status, body = ready(pg_box)
    assert status == "200 OK", body
    assert body["reason"] == "postgresql on 127.0.0.1: ok"

    pg_box.systemctl("stop", PG_UNIT, check=True, timeout=60)
    status, body = ready(pg_box)
    assert status == "503 Service Unavailable"
    reason = str(body["reason"])
    assert reason.endswith(": postgresql on 127.0.0.1") and "refused" in reason, reason
    assert "demo-pw-1234" not in reason
