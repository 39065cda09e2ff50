"""The one template check: a unit that still holds a Jinja or ``@placeholder@`` token is not a unit yet.

``rewrite``, ``diff`` and ``verify`` all ask this module, so a unit is a template for all of them or for none.
Comment lines are not looked at: systemd never reads them, so ``# replace @VENV@ ...`` is harmless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from unitctl.errors import TemplateUnitError

_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_AT_PLACEHOLDER = re.compile(r"@[A-Za-z_][A-Za-z0-9_]*@")


@dataclass(frozen=True)
class Placeholder:
    """The first template token found in a unit's text."""

    token: str
    kind: str  # "Jinja" or "@placeholder@"
    line: int


def find_placeholder(text: str) -> Placeholder | None:
    """Return the first template token outside comment lines, None when the text has none."""
    # Blank out comment lines, keeping offsets, so line numbers stay right.
    readable = "".join(
        " " * len(line.rstrip("\r\n")) + line[len(line.rstrip("\r\n")) :]
        if line.lstrip(" \t").startswith(("#", ";"))
        else line
        for line in text.splitlines(keepends=True)
    )
    found = [(m.start(), m.group(0), kind) for pattern, kind in ((_JINJA, "Jinja"), (_AT_PLACEHOLDER, "@placeholder@"))
             if (m := pattern.search(readable))]  # fmt: skip
    if not found:
        return None
    start, token, kind = min(found)
    return Placeholder(token[:40], kind, text.count("\n", 0, start) + 1)


def check_not_template(text: str, *, path: str | None = None) -> None:
    """Raise TemplateUnitError when the unit text is still a template."""
    found = find_placeholder(text)
    if found is not None:
        raise TemplateUnitError(
            f"{path or 'the unit'} line {found.line}: {found.token!r} is a {found.kind} template placeholder, "
            "not a unit",
            hint="render the template first (or give the installed unit), then rewrite that",
        )
