"""Which variable names hold secrets: one rule for diffs, verify findings, history, logs and summaries."""

from __future__ import annotations

import re

# Case-insensitive parts of a variable name that mark its value as secret. Broad on purpose: masking a harmless
# value costs a look at the unit; printing a secret into a CI log cannot be taken back.
SECRET_PARTS = (
    "PASSWORD",
    "PASSWD",
    "PASS",
    "SECRET",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "PRIVATE",
    "AUTH",
    "DSN",
    "SALT",
    "COOKIE",
    "SESSION",
)
_SECRET_NAME = re.compile("|".join(SECRET_PARTS), re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Return True when the variable ``name`` looks like it holds a secret."""
    return bool(_SECRET_NAME.search(name))
