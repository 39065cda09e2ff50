"""Settings from the environment the unit gives the service (Environment=/EnvironmentFile=)."""

from __future__ import annotations

import os


def database_url() -> str:
    """Return where the database is: DATABASE_URL, else DEMOAPP_DB_PATH as SQLite, else a local SQLite file."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    path = os.environ.get("DEMOAPP_DB_PATH", "").strip()
    if path:
        return "sqlite:///" + os.path.abspath(path)
    return "sqlite:///" + os.path.abspath("demoapp.db")
