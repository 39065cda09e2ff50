"""Unified diff of two unit texts with secrets masked, a one-line semantic summary, and colour.

Pure: texts in, lines and strings out. Secrets are masked in both sides before diffing, so a
diff never prints a password; whether the units differ is decided on the real texts, so a
changed secret still makes ``unitctl diff`` exit 1 ("secret values differ").
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from unitctl.output import style

MASK = "***"
# Case-insensitive parts of a variable name that mark its value as secret.
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
# scheme://user:password@host — a password inside any URL-valued variable.
_URL_PASSWORD = re.compile(r"(://[^:/@\s\"']*:)[^@/\s\"']+@")


def is_secret_name(name: str) -> bool:
    """Return True when an environment variable's name says its value is a secret."""
    return bool(_SECRET_NAME.search(name))


def mask_secrets(text: str) -> str:
    """Return ``text`` with the values of secret ``Environment=`` assignments replaced by ``***``."""
    out: list[str] = []
    in_env = False  # inside a continued Environment= line
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        stripped = body.lstrip()
        if stripped.startswith(("#", ";")):
            # Comment lines never end a continuation (systemd >= 240) and are not values.
            out.append(line)
            continue
        continued = _continues(body)
        if in_env:
            out.append(_mask_words(body) + ending)
            in_env = continued
            continue
        key, sep, _ = stripped.partition("=")
        if sep and key.strip() == "Environment":
            start = len(body) - len(stripped) + body[len(body) - len(stripped) :].index("=") + 1
            out.append(body[:start] + _mask_words(body[start:]) + ending)
            in_env = continued
        else:
            out.append(line)
    return "".join(out)


def _continues(body: str) -> bool:
    n = len(body) - len(body.rstrip("\\"))
    return n % 2 == 1


def _mask_words(raw: str) -> str:
    """Mask secret KEY=VALUE words in one physical line of an Environment= value."""
    result: list[str] = []
    i = 0
    n = len(raw)
    while i < n:
        if raw[i].isspace():
            result.append(raw[i])
            i += 1
            continue
        start = i
        quote: str | None = None
        while i < n:
            ch = raw[i]
            if ch == "\\" and i + 1 < n:
                i += 2
                continue
            if quote:
                if ch == quote:
                    quote = None
            elif ch in "\"'":
                quote = ch
            elif ch.isspace():
                break
            i += 1
        result.append(_mask_word(raw[start:i]))
    return "".join(result)


def _mask_word(word: str) -> str:
    plain = word.replace('"', "").replace("'", "")
    name, sep, _ = plain.partition("=")
    if sep and is_secret_name(name):
        lead = word[0] if word[0] in "\"'" else ""
        return f"{lead}{name}={MASK}{lead}"
    return _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + "@", word)


@dataclass(frozen=True)
class UnitDiff:
    """The result of comparing an installed unit with the desired one."""

    differs: bool
    lines: tuple[str, ...]  # unified diff of the masked texts, each ending in "\n"
    summary: str

    @property
    def secrets_only(self) -> bool:
        """True when the units differ only inside masked secret values."""
        return self.differs and not self.lines


def unified(old: str, new: str, *, old_name: str, new_name: str, context: int = 3) -> list[str]:
    """Return the unified diff lines of ``old`` → ``new`` (every line ends with a newline)."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=old_name,
        tofile=new_name,
        n=context,
    )
    result = []
    for line in lines:
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        result.append(line)
    return result


def compare(old: str, new: str, *, old_name: str, new_name: str, summary: str = "") -> UnitDiff:
    """Diff two unit texts with secrets masked on both sides."""
    differs = old != new
    lines = unified(mask_secrets(old), mask_secrets(new), old_name=old_name, new_name=new_name)
    if differs and not lines and not summary:
        summary = "secret values differ (masked)"
    elif differs and not summary:
        summary = "unit differs"
    elif not differs:
        summary = "no changes"
    return UnitDiff(differs=differs, lines=tuple(lines), summary=summary)


def colourize(lines: Iterable[str], enabled: bool) -> list[str]:
    """Colour diff lines: headers bold, hunks cyan, removals red, additions green."""
    out = []
    for line in lines:
        body = line.rstrip("\n")
        end = line[len(body) :]
        if line.startswith(("---", "+++")):
            out.append(style(body, "bold", enabled) + end)
        elif line.startswith("@@"):
            out.append(style(body, "cyan", enabled) + end)
        elif line.startswith("-"):
            out.append(style(body, "red", enabled) + end)
        elif line.startswith("+"):
            out.append(style(body, "green", enabled) + end)
        else:
            out.append(line)
    return out


def join_summary(parts: Sequence[str]) -> str:
    """Join semantic changes into the one-line summary."""
    return ", ".join(p for p in parts if p)
