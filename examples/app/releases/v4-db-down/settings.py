"""Settings: this release "moves the database to its new home", a location nobody provisioned.

The code imports fine and /health answers 200, but /health/ready can never reach the database.
"""

from __future__ import annotations

import os

NEW_DATABASE_URL = "sqlite:////var/lib/demoapp/v4/app.db"


def database_url() -> str:
    """Return where the database is: the new location unless DEMOAPP_NEW_DB_URL says otherwise."""
    return os.environ.get("DEMOAPP_NEW_DB_URL", NEW_DATABASE_URL)
