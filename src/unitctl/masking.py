"""Secret masking: the one rule for every place unitctl writes (terminal, --json, history, journal excerpts, CI).

Two ways a secret is found:

- by VALUE in free text (an app's traceback, a journal line, a probe answer): every value the unit gives the
  service (Environment=, EnvironmentFile=, Gunicorn ``-e``, credentials, URL passwords) is replaced by ``****``
  wherever it appears, subject to ``should_mask``; plus ``NAME=VALUE`` / ``NAME: VALUE`` assignments to clearly
  secret names and the password of any ``scheme://user:PASSWORD@host``;
- by POSITION in a unit file (``unitctl diff``): the value of a secret-named ``Environment=`` word or
  ``-e NAME=VALUE`` Gunicorn argument, every ``SetCredential=`` value and every URL password.

The values a unit gives its service are learned once, when unitctl reads the unit (``preimport.service_view``
calls ``remember``), so every writer masks them even when it was handed only text. One unitctl process runs
one command for one unit: what it remembers only grows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MASK = "****"

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

# Below these lengths a value is not searched for in free text: replacing "abc" or "prod" everywhere would shred
# tracebacks and journal lines. A secret name lowers the bar; its shorter values are still masked by position.
MIN_SECRET_LEN = 4
MIN_PLAIN_LEN = 8
_BOOLEAN = frozenset({"true", "false", "yes", "no", "on", "off"})
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_PATH = re.compile(r"^/[^\s@]*$")  # one absolute path or a PATH-like list of them

# In free text only assignments to clearly secret names are masked: the broader SECRET_PARTS would hide
# "KeyError: 'DATABASE_URL'" and every "session: ..." log line.
_INLINE_SECRET = re.compile(
    r"(?i)\b([A-Z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|credential|authorization)[A-Z0-9_.-]*"
    r"[\"']?\s*[=:]\s*[\"']?(?:(?:Bearer|Basic|Token)\s+)?)([^\s\"',;]+)"
)
# scheme://user:PASSWORD@host (the user part may be empty: redis://:PASSWORD@host).
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@\"']*:)([^@/\s\"']+)(@)")

_remembered: set[str] = set()


def is_secret_name(name: str) -> bool:
    """Return True when the variable ``name`` looks like it holds a secret."""
    return bool(_SECRET_NAME.search(name))


def should_mask(name: str, value: str) -> bool:
    """Decide whether ``value`` (of variable ``name``) is searched for and masked in free text.

    Secret-looking names: every value of at least MIN_SECRET_LEN characters. Other names: values of at least
    MIN_PLAIN_LEN characters that are not a boolean word, a number or an absolute path. Boolean words are never
    masked by value: they carry one bit and appear everywhere.
    """
    stripped = value.strip()
    if stripped.lower() in _BOOLEAN:
        return False
    if is_secret_name(name):
        return len(stripped) >= MIN_SECRET_LEN
    return len(stripped) >= MIN_PLAIN_LEN and not _NUMBER.match(stripped) and not _PATH.match(stripped)


def url_passwords(text: str) -> list[str]:
    """Return the passwords of the ``scheme://user:PASSWORD@host`` URLs in ``text``."""
    return [m.group(2) for m in _URL_PASSWORD.finditer(text)]


def secret_values(env: Mapping[str, str]) -> set[str]:
    """Return the literal values of ``env`` to mask in free text (see ``should_mask``), URL passwords included."""
    values: set[str] = set()
    for name, value in env.items():
        if should_mask(name, value):
            values.add(value.strip())
        values.update(p for p in url_passwords(value) if len(p) >= MIN_SECRET_LEN)
    return values


def remember(env: Mapping[str, str]) -> None:
    """Learn the values a unit gives its service: every later ``mask`` hides them."""
    _remembered.update(secret_values(env))


def forget() -> None:
    """Forget every remembered value (tests run many units in one process)."""
    _remembered.clear()


def mask(text: str, env: Mapping[str, str] | None = None) -> str:
    """Return ``text`` with remembered values, ``env``'s values, secret assignments and URL passwords masked."""
    values = set(_remembered)
    if env:
        values |= secret_values(env)
    # Longest first: a value that contains another must go whole.
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    text = _mask_urls(text)
    return _INLINE_SECRET.sub(lambda m: m.group(1) + MASK if m.group(2) != MASK else m.group(0), text)


def mask_all(texts: Iterable[str], env: Mapping[str, str] | None = None) -> list[str]:
    """Mask each of ``texts``."""
    return [mask(t, env) for t in texts]


# -- unit files: by position ---------------------------------------------------------------------------------

_GUNICORN_ENV_FLAGS = ("-e", "--env")


def mask_unit_text(text: str) -> str:
    """Return a unit file's text with secret values masked by position, every other byte kept.

    Secret-named ``Environment=`` words and Gunicorn ``-e``/``--env NAME=VALUE`` arguments in ``Exec*=`` lines,
    every ``SetCredential=`` value and every URL password (comments included).
    """
    out: list[str] = []
    key = ""  # the directive a continued line belongs to ("" outside one)
    after_flag = False  # the previous word of an Exec line was -e/--env
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        stripped = body.lstrip()
        if stripped.startswith(("#", ";")):
            # Comment lines never end a continuation (systemd >= 240) and are not values.
            out.append(_mask_urls(body) + ending)
            continue
        if key:
            start = 0
        else:
            name, sep, _ = stripped.partition("=")
            key = name.strip() if sep else ""
            after_flag = False
            start = len(body) - len(stripped) + stripped.index("=") + 1 if sep else len(body)
        head, value = body[:start], body[start:]
        if key == "Environment":
            value = "".join(_mask_assignment(seg) if word else seg for seg, word in _segments(value))
        elif key == "SetCredential":
            value = _mask_credential(value) if head else _mask_continued(value)
        elif key.startswith("Exec"):
            value, after_flag = _mask_exec(value, after_flag)
        out.append(_mask_urls(head + value) + ending)
        if not _continues(body):
            key = ""
    return "".join(out)


def _mask_urls(text: str) -> str:
    return _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)


def _continues(body: str) -> bool:
    n = len(body) - len(body.rstrip("\\"))
    return n % 2 == 1


def _mask_credential(value: str) -> str:
    """Mask the VALUE of a ``SetCredential=ID:VALUE`` line (the ID stays: it says which credential changed)."""
    ident, sep, rest = value.partition(":")
    if not sep or not rest.strip():
        return value
    return f"{ident}:{MASK}" + ("\\" if _continues(rest) else "")


def _mask_continued(value: str) -> str:
    """Mask a continuation line of a secret value whole (its continuation backslash kept)."""
    if not value.strip():
        return value
    return MASK + ("\\" if _continues(value) else "")


def _mask_exec(value: str, after_flag: bool) -> tuple[str, bool]:
    """Mask Gunicorn ``-e NAME=VALUE``, ``--env NAME=VALUE``, ``--env=NAME=VALUE`` and ``-eNAME=VALUE`` words.

    ``after_flag``: the previous physical line ended in ``-e``; the result says whether this one does.
    """
    out: list[str] = []
    for seg, is_word in _segments(value):
        if not is_word or seg == "\\":
            out.append(seg)  # blanks, and the continuation backslash, which is no argument
            continue
        plain = seg.replace('"', "").replace("'", "")
        if after_flag:
            seg = _mask_assignment(seg)
        elif plain.startswith("--env="):
            seg = "--env=" + _mask_assignment(seg[len("--env=") :])
        elif plain.startswith("-e") and not plain.startswith("--") and "=" in plain:
            seg = "-e" + _mask_assignment(seg[2:])
        after_flag = plain in _GUNICORN_ENV_FLAGS
        out.append(seg)
    return "".join(out), after_flag


def _segments(raw: str) -> list[tuple[str, bool]]:
    """Split one physical line into (text, is_word) runs as systemd quotes words, every character kept."""
    result: list[tuple[str, bool]] = []
    i = 0
    n = len(raw)
    while i < n:
        if raw[i].isspace():
            j = i
            while j < n and raw[j].isspace():
                j += 1
            result.append((raw[i:j], False))
            i = j
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
        result.append((raw[start:i], True))
    return result


def _mask_assignment(word: str) -> str:
    """Mask a ``NAME=VALUE`` word when NAME looks secret (quotes around the word kept)."""
    plain = word.replace('"', "").replace("'", "")
    name, sep, _ = plain.partition("=")
    if sep and is_secret_name(name):
        lead = word[0] if word[0] in "\"'" else ""
        trail = "\\" if word.endswith("\\") and not word.endswith("\\\\") else ""
        return f"{lead}{name}={MASK}{lead}{trail}"
    return word
