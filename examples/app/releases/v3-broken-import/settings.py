"""Settings, now declared with Pydantic: the "upgrade to Pydantic 2" release that breaks at import time.

Pydantic 2 moved BaseSettings to the separate pydantic-settings package; code written for Pydantic 1
fails on the first line below with pydantic.errors.PydanticImportError (an ImportError).
"""

from __future__ import annotations

from pydantic import BaseSettings


class Settings(BaseSettings):
    database_url: str = "sqlite:///demoapp.db"


def database_url() -> str:
    """Return where the database is."""
    return Settings().database_url
