"""The example app (examples/app): its routes and its readiness against a real SQLite file, in process."""

from __future__ import annotations

import importlib
import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "app"


@pytest.fixture
def wsgi(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(APP_DIR))
    for name in ("wsgi", "db", "settings", "release"):
        sys.modules.pop(name, None)
    yield importlib.import_module("wsgi")
    for name in ("wsgi", "db", "settings", "release"):
        sys.modules.pop(name, None)


def get(app: Any, path: str, method: str = "GET") -> tuple[int, dict[str, Any]]:
    seen: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status

    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": method}, start_response))
    return int(seen["status"].split()[0]), json.loads(body)


def test_root_and_liveness_show_the_release(wsgi: ModuleType) -> None:
    assert get(wsgi.application, "/") == (200, {"app": "demoapp", "release": "v1"})
    assert get(wsgi.application, "/health") == (200, {"status": "alive", "release": "v1"})
    assert get(wsgi.application, "/nope")[0] == 404
    assert get(wsgi.application, "/", "POST")[0] == 405


def test_ready_queries_the_sqlite_database(wsgi: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "app.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    status, body = get(wsgi.application, "/health/ready")
    assert status == 503 and body["ready"] is False
    assert body["reason"].startswith("unable to open database file: sqlite ")
    assert not db.exists(), "readiness must never create an empty database"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.commit()
    status, body = get(wsgi.application, "/health/ready")
    assert status == 200 and body["ready"] is True and "ok (1 schema objects)" in body["reason"]
    db.write_bytes(b"this is not a database" * 100)
    status, body = get(wsgi.application, "/health/ready")
    assert status == 503 and "file is not a database" in body["reason"]


def test_db_path_shorthand_and_unsupported_urls(
    wsgi: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DEMOAPP_DB_PATH", str(tmp_path / "x.db"))
    assert importlib.import_module("settings").database_url() == f"sqlite:///{tmp_path / 'x.db'}"
    monkeypatch.setenv("DATABASE_URL", "mysql://db/app")
    status, body = get(wsgi.application, "/health/ready")
    assert status == 503 and "unsupported DATABASE_URL scheme 'mysql'" in body["reason"]
    monkeypatch.setenv("DATABASE_URL", "sqlite://relative.db")
    status, body = get(wsgi.application, "/health/ready")
    assert status == 503 and body["reason"].startswith("bad DATABASE_URL")


def test_postgresql_without_psycopg_is_not_ready_and_says_why(
    wsgi: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@127.0.0.1:1/app")
    monkeypatch.setitem(sys.modules, "psycopg", None)  # an import of it raises ImportError
    status, body = get(wsgi.application, "/health/ready")
    assert status == 503
    assert (
        body["reason"] == "DATABASE_URL is postgresql:// but psycopg is not installed (pip install 'psycopg[binary]')"
    )
