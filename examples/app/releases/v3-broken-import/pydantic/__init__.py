"""Vendored stand-in for the top-level module of pydantic 2.12 (only what this release touches).

The demo must run without a network, so the release ships this instead of installing pydantic.
Like the real pydantic 2 (pydantic/__init__.py → _migration.getattr_migration), the module answers
``from pydantic import BaseSettings`` from its ``__getattr__`` by raising
pydantic.errors.PydanticImportError, an ImportError subclass, with the same message.
"""

from pydantic.errors import PydanticImportError

VERSION = "2.12.0"


def __getattr__(name: str) -> object:
    if name == "BaseSettings":
        raise PydanticImportError(
            "`BaseSettings` has been moved to the `pydantic-settings` package. "
            "See https://docs.pydantic.dev/2.12/migration/#basesettings-has-moved-to-pydantic-settings "
            "for more details."
        )
    raise AttributeError(f"module 'pydantic' has no attribute {name!r}")
