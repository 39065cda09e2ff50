"""systemd unit names: the unit types, which of them unitctl's commands take, validation and splitting.

Upstream: systemd's unit-name.c (``unit_name_is_valid``: at most 255 characters of ``[A-Za-z0-9:_.\\-]``, one
``@`` for a template or an instance, a type suffix) and unit-def.c (the unit types). Every rule about a unit's
name lives here, so a name unitctl accepts on the command line is one the drop-in lookup can split.
"""

from __future__ import annotations

import re

from unitctl.errors import UsageError

__all__ = ["COMMAND_TYPES", "UNIT_TYPES", "has_command_type", "split_unit_name", "validate_unit_name"]

# Every unit type systemd knows (unit-def.c), for reading units and their drop-in directories.
UNIT_TYPES = ("service", "socket", "target", "device", "mount", "automount", "swap", "timer", "path", "slice", "scope")
# The types a unitctl command takes as NAME (what it can deploy, verify or show).
COMMAND_TYPES = ("service", "socket", "target", "timer", "path", "mount")

MAX_LENGTH = 255  # UNIT_NAME_MAX
_CHARS = r"[A-Za-z0-9:_.\\-]"
_NAME = re.compile(rf"({_CHARS}+)(?:(@)({_CHARS}*))?\.({'|'.join(UNIT_TYPES)})")


def _invalid(name: str) -> UsageError:
    return UsageError(
        f"{name!r} is not a valid systemd unit name",
        hint="use letters, digits and ':_.-@\\', e.g. 'myapp' or 'myapp.service'",
    )


def split_unit_name(name: str) -> tuple[str, str | None, str]:
    """Return (prefix, instance or None, type) of a unit name of any type; "" is the instance of a template."""
    m = _NAME.fullmatch(name)  # fullmatch: "$" would accept a trailing newline
    if m is None or len(name) > MAX_LENGTH:
        raise _invalid(name)
    return m.group(1), (m.group(3) if m.group(2) else None), m.group(4)


def validate_unit_name(name: str, *, default_suffix: str = ".service") -> str:
    """Return ``name`` (with ``.service`` appended when it has no suffix) if a command can take it, else UsageError."""
    if "." not in name.rsplit("@", 1)[-1]:
        name = name + default_suffix
    # A leading "-" is a valid unit name to systemd, but it would read as an option in a command's argv.
    if split_unit_name(name)[2] not in COMMAND_TYPES or name.startswith("-"):
        raise _invalid(name)
    return name


def has_command_type(name: str) -> bool:
    """Return True when ``name`` ends in the suffix of a type unitctl's commands take (``.service``, ``.socket`` …)."""
    return name.rsplit(".", 1)[-1] in COMMAND_TYPES
