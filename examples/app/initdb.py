"""Create the app's SQLite database (idempotent): ``python initdb.py`` with DATABASE_URL or DEMOAPP_DB_PATH set."""

from __future__ import annotations

import os
import sqlite3
import sys

import db
import settings


def main() -> int:
    url = settings.database_url()
    if not url.startswith("sqlite:"):
        print(f"initdb: only SQLite databases are created here, not {url.split(':', 1)[0]}", file=sys.stderr)
        return 2
    path = db.sqlite_path(url)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    print(f"initdb: {path} ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
