"""Readiness: one real query against the app's database (SQLite, or PostgreSQL when psycopg is installed)."""

from __future__ import annotations

import sqlite3
from urllib.parse import urlsplit

CONNECT_TIMEOUT = 2  # seconds: a readiness probe must answer before the deployer's probe gives up


def sqlite_path(url: str) -> str:
    """Return the file path of a sqlite:/// URL (sqlite:////abs/path → /abs/path)."""
    rest = url[len("sqlite://") :]
    if not rest.startswith("/") or rest == "/":
        raise ValueError(f"not a sqlite:///PATH URL: {url!r}")
    return rest[1:] if rest.startswith("//") else rest


def check(url: str) -> tuple[bool, str]:
    """Run one query against the database at ``url``; return (ready, short reason)."""
    scheme = urlsplit(url).scheme
    try:
        if scheme == "sqlite":
            return _check_sqlite(sqlite_path(url))
        if scheme in ("postgresql", "postgres"):
            return _check_postgres(url)
    except ValueError as exc:
        return False, f"bad DATABASE_URL: {exc}"
    return False, f"unsupported DATABASE_URL scheme {scheme!r} (use sqlite:////PATH or postgresql://...)"


def _check_sqlite(path: str) -> tuple[bool, str]:
    # mode=ro: never create an empty database where the real one is missing; that is exactly "not ready".
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=CONNECT_TIMEOUT)
        try:
            (count,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return False, f"{exc}: sqlite {path}"
    return True, f"sqlite {path}: ok ({count} schema objects)"


def _check_postgres(url: str) -> tuple[bool, str]:
    try:
        import psycopg  # optional: only servers using PostgreSQL need it
    except ImportError:
        return False, "DATABASE_URL is postgresql:// but psycopg is not installed (pip install 'psycopg[binary]')"
    host = urlsplit(url).hostname or "localhost"
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT) as conn:
            conn.execute("SELECT 1").fetchone()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return False, f"{first}: postgresql on {host}"
    return True, f"postgresql on {host}: ok"
