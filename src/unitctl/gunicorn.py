"""Gunicorn's command line as Gunicorn itself reads it, the Gunicorn invocation inside an ExecStart, effective settings.

The option table is Gunicorn's own (``_gunicorn_options.py``, generated from ``gunicorn.config.KNOWN_SETTINGS``).
``parse_args`` mirrors Python 3.11's argparse as Gunicorn configures it (``allow_abbrev`` on): ``-w4``, ``-w=4``,
``--workers=4``, unambiguous abbreviations, clusters of short flags (``-Dw4``), ``--`` and options after the
APP_MODULE; it keeps, for every option, which argv word (and which part of it) carries the flag and the value,
so that ``rewrite.py`` can change exactly those bytes. It takes time linear in the number of words (argparse itself
is quadratic in the number of options: a unit with 10k continuation lines took 7.5 s when every parse was
cross-checked with it); Gunicorn's own parser is the oracle it is tested against (tests/unit/test_gunicorn.py).

Where Gunicorn's settings come from (low → high): defaults (``workers`` = ``$WEB_CONCURRENCY`` or 1) < config file
(``-c``, else ``-c`` in ``GUNICORN_CMD_ARGS``, else ``gunicorn.conf.py`` in the working directory) <
``GUNICORN_CMD_ARGS`` (shlex-split) < the command line.
"""

from __future__ import annotations

import ast
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from unitctl._gunicorn_options import GUNICORN_VERSION, OPTIONS
from unitctl.errors import NotGunicornError, RefusedError, UsageError

if TYPE_CHECKING:
    from unitctl.execline import Command, Word
    from unitctl.unitfile import Entry, MergedUnit, UnitFile

__all__ = [
    "GUNICORN_VERSION",
    "ConfigFacts",
    "EnvWord",
    "Found",
    "GunicornArgs",
    "GunicornArgsError",
    "Invocation",
    "OptionSpec",
    "OptionUse",
    "ReadFile",
    "Settings",
    "ShellScript",
    "ShellSyntaxError",
    "ShellWord",
    "Sourced",
    "auto_workers",
    "default_read_file",
    "describe_refusal_for",
    "effective_settings",
    "environment_assignments",
    "environment_words",
    "find_gunicorn",
    "find_invocation",
    "identify_server",
    "parse_args",
    "parse_config_file",
    "parse_env_file",
    "resolve_workers",
    "shell_split",
    "shlex_words",
    "spec",
    "unit_environment",
]


class GunicornArgsError(RefusedError):
    """Gunicorn arguments that Gunicorn would reject or that unitctl cannot follow exactly."""


class ShellSyntaxError(GunicornArgsError):
    """A ``sh -c`` script that uses shell syntax unitctl does not rewrite (expansions, pipes, &&, redirects...)."""


# -- the option table -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionSpec:
    """One Gunicorn command-line option as argparse knows it."""

    setting: str  # Gunicorn's setting name, e.g. "workers", "preload_app"
    flags: tuple[str, ...]  # e.g. ("-w", "--workers")
    action: str  # store, store_true, store_const, append, or help/version
    nargs: str | None  # None (one value) or "?" (optional value)
    const: object
    type: str  # "str", "int", "auto_int"

    @property
    def takes_value(self) -> bool:
        """Return True when the option can consume a value (store/append)."""
        return self.action in ("store", "append")


def _build_specs() -> tuple[dict[str, OptionSpec], dict[str, OptionSpec]]:
    by_setting: dict[str, OptionSpec] = {}
    by_flag: dict[str, OptionSpec] = {}
    # Gunicorn's parser() adds -v/--version and argparse adds -h/--help before the settings: they take part in
    # abbreviation matching (``--ver`` is --version) even though they are not settings.
    extra = [
        OptionSpec("help", ("-h", "--help"), "help", None, None, "str"),
        OptionSpec("version", ("-v", "--version"), "version", None, None, "str"),
    ]
    rows = [
        OptionSpec(name, tuple(flags), action, nargs, const, typ) for name, flags, action, nargs, const, typ in OPTIONS
    ]
    # argparse registers options in sorted(settings) order; abbreviation results do not depend on the order.
    for s in extra + rows:
        by_setting[s.setting] = s
        for f in s.flags:
            by_flag[f] = s
    return by_setting, by_flag


_BY_SETTING, _BY_FLAG = _build_specs()


def spec(setting: str) -> OptionSpec:
    """Return the option of a Gunicorn setting (KeyError when it has no command-line flag)."""
    return _BY_SETTING[setting]


# -- argv parsing -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionUse:
    """One option on a command line and the exact argv positions that carry it."""

    setting: str
    flag: str  # the option it resolved to, e.g. "--preload" for "--pre"
    written: str  # the option as written, e.g. "--pre", "-w", "--workers" (without "=value")
    index: int  # argv index of the word holding the option
    value: str | None  # the string value (None for flags)
    value_index: int | None  # argv index of the word holding the value (== index when attached)
    value_start: int | None  # offset of the value inside that word (0 for a separate word)
    cluster: bool = False  # part of a cluster of short flags, like -D in -Dw4


@dataclass(frozen=True)
class GunicornArgs:
    """Gunicorn arguments parsed like Gunicorn does; indices refer to the argv given to parse_args."""

    argv: tuple[str, ...]
    start: int  # index of the first Gunicorn argument in argv
    uses: tuple[OptionUse, ...]
    positionals: tuple[tuple[int, str], ...]  # (argv index, value) of APP_MODULE (at most one)
    values: Mapping[str, object] = field(default_factory=dict)  # setting → value as argparse stores it
    double_dash: int | None = None  # argv index of a "--" that ended the options

    def uses_of(self, setting: str) -> list[OptionUse]:
        """Return every use of a setting, in argv order."""
        return [u for u in self.uses if u.setting == setting]

    def last(self, setting: str) -> OptionUse | None:
        """Return the use that wins (the last one), or None."""
        found = self.uses_of(setting)
        return found[-1] if found else None

    @property
    def app(self) -> str | None:
        """Return APP_MODULE as given on this command line, or None."""
        return self.positionals[0][1] if self.positionals else None


_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")

_Tuple = tuple[OptionSpec | None, str, str | None]


def _option_tuples(arg: str) -> list[_Tuple]:
    """Mirror argparse._get_option_tuples (Python 3.11) over Gunicorn's flags."""
    result: list[_Tuple] = []
    if arg[1] == "-":
        if "=" in arg:
            prefix, explicit = arg.split("=", 1)
        else:
            prefix, explicit = arg, None
        for flag, s in _BY_FLAG.items():
            if flag.startswith(prefix):
                result.append((s, flag, explicit))
    else:
        short, short_explicit = arg[:2], arg[2:]
        for flag, s in _BY_FLAG.items():
            if flag == short:
                result.append((s, flag, short_explicit))
            elif flag.startswith(arg):
                result.append((s, flag, None))
    return result


def _parse_optional(arg: str, where: str) -> _Tuple | None:
    """Mirror argparse._parse_optional: None for a positional, (spec or None, flag, explicit value) for an option."""
    if not arg or arg[0] != "-":
        return None
    if arg in _BY_FLAG:
        return _BY_FLAG[arg], arg, None
    if len(arg) == 1:
        return None
    if "=" in arg:
        opt, explicit = arg.split("=", 1)
        if opt in _BY_FLAG:
            return _BY_FLAG[opt], opt, explicit
    tuples = _option_tuples(arg)
    if len(tuples) > 1:
        matches = ", ".join(t[1] for t in tuples)
        raise GunicornArgsError(
            f"{where}: Gunicorn rejects the ambiguous option {arg!r} (it could be {matches})",
            hint="spell the option out in full",
        )
    if len(tuples) == 1:
        return tuples[0]
    if _NEGATIVE_NUMBER.match(arg) or " " in arg:
        return None
    return None, arg, None


def parse_args(argv: Sequence[str], start: int = 0, *, where: str = "the Gunicorn command line") -> GunicornArgs:
    """Parse argv[start:] exactly like Gunicorn's argparse parser; refuse what Gunicorn would reject."""
    argv = tuple(argv)
    words = argv[start:]
    # Classify every word first, as argparse does (an ambiguous spelling fails even where it would be a value).
    pattern: list[str] = []
    optionals: dict[int, _Tuple] = {}
    double_dash: int | None = None
    for i, word in enumerate(words):
        if double_dash is not None:
            pattern.append("A")
            continue
        if word == "--":
            double_dash = i
            pattern.append("-")
            continue
        tup = _parse_optional(word, where)
        if tup is None:
            pattern.append("A")
        else:
            optionals[i] = tup
            pattern.append("O")

    uses: list[OptionUse] = []
    positionals: list[tuple[int, str]] = []
    # argparse gives APP_MODULE (nargs="*") the first run of positionals; one after an option is left over.
    leftover: list[str] = []
    i = 0
    while i < len(words):
        if pattern[i] in "-A":
            if positionals and uses and uses[-1].index > positionals[0][0]:
                leftover.append(words[i])
            elif pattern[i] == "A":
                positionals.append((start + i, words[i]))
            i += 1
            continue
        s, flag, explicit = optionals[i]
        if s is None:
            raise GunicornArgsError(
                f"{where}: Gunicorn has no option {words[i]!r} (Gunicorn {GUNICORN_VERSION})",
                hint="remove it or spell a Gunicorn option (gunicorn --help lists them)",
            )
        word = words[i]
        offset = 0  # where the current option starts inside the word
        cluster = False
        while True:
            assert s is not None
            if explicit is not None:
                if not s.takes_value and flag[1] != "-" and explicit != "":
                    written = "-" + word[offset + 1]
                    uses.append(OptionUse(s.setting, flag, written, start + i, None, None, None, True))
                    cluster = True
                    offset += 1  # the next flag is "-" + the character after this one
                    nxt = "-" + explicit[0]
                    if nxt not in _BY_FLAG:
                        raise GunicornArgsError(
                            f"{where}: Gunicorn rejects {word!r}: {flag} takes no value, got {explicit!r}",
                            hint=f"write {flag} as a word of its own",
                        )
                    s, flag, explicit = _BY_FLAG[nxt], nxt, explicit[1:] or None
                    continue
                if s.takes_value:
                    vstart = len(word) - len(explicit)
                    written = "-" + word[offset + 1] if cluster else word[:vstart].rstrip("=")
                    uses.append(OptionUse(s.setting, flag, written, start + i, explicit, start + i, vstart, cluster))
                    i += 1
                    break
                raise GunicornArgsError(
                    f"{where}: Gunicorn rejects {word!r}: {flag} takes no value, got {explicit!r}",
                    hint=f"write just {flag} (it is a switch)"
                    if s.setting != "preload_app"
                    else "write just --preload",
                )
            written = word if not cluster else "-" + word[offset + 1]
            if s.takes_value:
                nxt_is_value = i + 1 < len(words) and pattern[i + 1] == "A"
                if nxt_is_value:
                    uses.append(OptionUse(s.setting, flag, written, start + i, words[i + 1], start + i + 1, 0, cluster))
                    i += 2
                    break
                if s.nargs == "?":
                    uses.append(OptionUse(s.setting, flag, written, start + i, None, None, None, cluster))
                    i += 1
                    break
                raise GunicornArgsError(
                    f"{where}: Gunicorn rejects {word!r}: {flag} expects a value",
                    hint=f"give {flag} its value",
                )
            uses.append(OptionUse(s.setting, flag, written, start + i, None, None, None, cluster))
            i += 1
            break

    if leftover:
        raise GunicornArgsError(
            f"{where}: Gunicorn would exit with 'error: unrecognized arguments: {' '.join(leftover)}'",
            hint="put APP_MODULE last, options before it (a switch like --preload takes no value)",
        )
    args = [v for _, v in positionals]
    if len(positionals) > 1:
        raise GunicornArgsError(
            f"{where}: Gunicorn takes one APP_MODULE but got {args!r}",
            hint=_extra_app_hint(words, [i - start for i, _ in positionals], uses, start),
        )
    dd = None if double_dash is None else start + double_dash
    return GunicornArgs(argv, start, tuple(uses), tuple(positionals), _stored(uses), dd)


def _extra_app_hint(words: Sequence[str], positions: Sequence[int], uses: Sequence[OptionUse], start: int) -> str:
    """Say why Gunicorn would see several APP_MODULEs (``positions`` index ``words``): a variable, a switch's value."""
    variables = [words[i] for i in positions if words[i].startswith("$")]
    if variables:
        return (
            f"{variables[0]} is expanded by systemd when the service starts, and unitctl rewrites only what it can"
            " read: write those options out in ExecStart= (or move them to GUNICORN_CMD_ARGS in Environment=)"
        )
    switches = {u.index - start: u.flag for u in uses if u.value is None}
    for i in positions:
        if i - 1 in switches:
            flag = switches[i - 1]
            return f"{flag} is a switch and takes no value: '{flag} {words[i]}' makes {words[i]!r} an app; drop it"
    return "keep only the app module (e.g. app:app) among the arguments"


def _stored(uses: Sequence[OptionUse]) -> dict[str, object]:
    """Return setting -> value as Gunicorn's argparse stores them (tested against Gunicorn's own parser)."""
    out: dict[str, object] = {}
    for u in uses:
        s = _BY_SETTING[u.setting]
        if s.action == "append":
            cast("list[str | None]", out.setdefault(u.setting, [])).append(u.value)
        elif s.action == "store":
            out[u.setting] = u.value if u.value is not None else s.const
        elif s.action == "store_const":
            out[u.setting] = s.const
        else:  # store_true, and argparse's own -h/--help and -v/--version
            out[u.setting] = True
    return {k: v for k, v in out.items() if v is not None}


# -- shell and shlex words --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShellWord:
    """A word of a shell or shlex string: its value, its raw span, and the raw index of every value character."""

    value: str
    start: int
    end: int
    charmap: tuple[int, ...]  # raw index of value[i]; charmap[len(value)] = raw index just after the last character


_SHELL_SPECIAL = set("|&;<>()$`")
_SHELL_GLOB = set("*?[")


def shell_split(script: str) -> list[ShellWord]:
    """Split a POSIX sh script that is a plain list of words; raise ShellSyntaxError on anything else."""
    words: list[ShellWord] = []
    i, n = 0, len(script)

    def bad(what: str) -> ShellSyntaxError:
        return ShellSyntaxError(
            f"the shell script {script!r} uses {what}, which unitctl does not rewrite",
            hint="run gunicorn directly in ExecStart= (WorkingDirectory=, Environment= replace cd and exports)",
        )

    while i < n:
        while i < n and script[i] in " \t":
            i += 1
        if i >= n:
            break
        if script[i] == "\n":
            if script[i:].strip() == "":
                break
            raise bad("several lines (commands)")
        start = i
        value: list[str] = []
        cmap: list[int] = []
        if script[i] == "#":
            raise bad("a comment")
        if script[i] == "~":
            raise bad("tilde expansion")
        while i < n and script[i] not in " \t\n":
            c = script[i]
            if c == "'":
                j = script.find("'", i + 1)
                if j < 0:
                    raise ShellSyntaxError(f"the shell script {script!r} has an unbalanced ' quote", hint="close it")
                value.extend(script[i + 1 : j])
                cmap.extend(range(i + 1, j))
                i = j + 1
            elif c == '"':
                j = i + 1
                while j < n and script[j] != '"':
                    if script[j] in "$`\\":
                        raise bad(f"{script[j]!r} inside double quotes")
                    j += 1
                if j >= n:
                    raise ShellSyntaxError(f'the shell script {script!r} has an unbalanced " quote', hint="close it")
                value.extend(script[i + 1 : j])
                cmap.extend(range(i + 1, j))
                i = j + 1
            elif c == "\\":
                if i + 1 >= n or script[i + 1] == "\n":
                    raise bad("a line continuation")
                value.append(script[i + 1])
                cmap.append(i + 1)
                i += 2
            elif c in _SHELL_SPECIAL:
                raise bad(f"{c!r} (pipes, lists, redirects, expansions or subshells)")
            elif c in _SHELL_GLOB or c in "{}":
                raise bad(f"{c!r} (globbing or brace expansion)")
            else:
                value.append(c)
                cmap.append(i)
                i += 1
        cmap.append(i if not cmap or script[i - 1] not in "'\"" else i - 1)
        words.append(ShellWord("".join(value), start, i, tuple(cmap)))
    return words


def shlex_words(text: str) -> list[ShellWord]:
    """Split like shlex.split(text) (POSIX mode, no comments), keeping raw spans; ValueError on bad quoting."""
    words: list[ShellWord] = []
    i, n = 0, len(text)
    ws = " \t\r\n"
    while i < n:
        while i < n and text[i] in ws:
            i += 1
        if i >= n:
            break
        start = i
        value: list[str] = []
        cmap: list[int] = []
        while i < n and text[i] not in ws:
            c = text[i]
            if c == "'":
                j = text.find("'", i + 1)
                if j < 0:
                    raise ValueError("No closing quotation")
                value.extend(text[i + 1 : j])
                cmap.extend(range(i + 1, j))
                i = j + 1
            elif c == '"':
                j = i + 1
                while j < n and text[j] != '"':
                    if text[j] == "\\" and j + 1 < n and text[j + 1] in '"\\':
                        j += 1
                    value.append(text[j])
                    cmap.append(j)
                    j += 1
                if j >= n:
                    raise ValueError("No closing quotation")
                i = j + 1
            elif c == "\\":
                if i + 1 >= n:
                    raise ValueError("No escaped character")
                value.append(text[i + 1])
                cmap.append(i + 1)
                i += 2
            else:
                value.append(c)
                cmap.append(i)
                i += 1
        cmap.append(i if text[i - 1] not in "'\"" else i - 1)
        words.append(ShellWord("".join(value), start, i, tuple(cmap)))
    return words


# -- finding the invocation -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShellScript:
    """``sh -c SCRIPT``: where the script is in the command's argv and its words."""

    index: int  # argv index of the script word
    text: str
    words: tuple[ShellWord, ...]


@dataclass(frozen=True)
class Invocation:
    """The Gunicorn inside one command; indices refer to ``argv`` (the script's words when ``shell`` is set)."""

    launcher: str  # "gunicorn", "python -m gunicorn", "poetry run gunicorn", ... with " in sh -c" when wrapped
    argv: tuple[str, ...]  # the words the indices refer to
    exe_index: int  # the word after which new options go (the gunicorn executable, or "gunicorn" of -m gunicorn)
    args: GunicornArgs
    shell: ShellScript | None = None


_PYTHON = re.compile(r"^(python|pypy)(\d+(\.\d+)*)?$")
_SHELLS = {"sh", "bash", "dash", "ash", "ksh", "zsh"}
_GUNICORN_MODULES = {"gunicorn", "gunicorn.app.wsgiapp"}
# Debian and Ubuntu's python3-gunicorn package installs the script as /usr/bin/gunicorn3 (older releases).
_GUNICORN_EXECUTABLES = {"gunicorn", "gunicorn3"}
# Options of `python` that take a value (the rest of the word, or the next word).
_PY_VALUE_OPTS = set("WX")
_PY_LONG_VALUE = {"--check-hash-based-pycs"}
# `uv run` flags unitctl can skip; any other option stops the search (it may take a value).
_UV_FLAGS = {
    "--frozen",
    "--locked",
    "--no-sync",
    "--no-dev",
    "--isolated",
    "--no-project",
    "--offline",
    "--active",
    "--no-config",
    "--exact",
    "--all-extras",
    "--all-packages",
    "-q",
    "--quiet",
}
_UV_VALUE_OPTS = {
    "--directory",
    "--project",
    "--python",
    "-p",
    "--with",
    "--extra",
    "--group",
    "--env-file",
    "--package",
}
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_OTHER_SERVERS = {
    "uwsgi": "uWSGI",
    "daphne": "Daphne",
    "granian": "Granian",
    "uvicorn": "Uvicorn",
    "hypercorn": "Hypercorn",
    "waitress-serve": "Waitress",
    "bjoern": "bjoern",
    "gunicorn_django": "the removed gunicorn_django",
    "gunicorn_paster": "the removed gunicorn_paster",
}


def _base(word: str) -> str:
    return posixpath.basename(word)


def find_invocation(argv: Sequence[str], *, where: str = "ExecStart=") -> Invocation | None:
    """Find Gunicorn in one command's argv (executable first) and parse its arguments; None when it is not there."""
    argv = tuple(argv)
    if not argv:
        return None
    inv = _find_direct(argv, where)
    if inv is not None:
        return inv
    exe = _base(argv[0])
    if exe in _SHELLS:
        k = 1
        while k < len(argv) and argv[k].startswith("-") and argv[k] != "-c" and "c" not in argv[k][1:]:
            k += 1
        if k < len(argv) and argv[k].startswith("-") and "c" in argv[k][1:] and not argv[k].startswith("--"):
            if set(argv[k][1:]) - set("ceuxl") or k + 1 >= len(argv):
                return None
            script = argv[k + 1]
            try:
                words = shell_split(script)
            except ShellSyntaxError:
                if "gunicorn" in script:
                    raise
                return None
            values = tuple(w.value for w in words)
            first = 1 if values[:1] == ("exec",) else 0
            if first < len(values) and "=" in values[first] and not values[first].startswith("/"):
                if "gunicorn" in script:
                    raise ShellSyntaxError(
                        f"the shell script {script!r} sets variables before the command; unitctl does not rewrite that",
                        hint="move them to Environment= and run gunicorn directly in ExecStart=",
                    )
                return None
            sub = _find_direct(values, f"{where} (sh -c script)", first)
            if sub is None:
                return None
            return Invocation(
                sub.launcher + f" in {exe} -c",
                values,
                sub.exe_index,
                sub.args,
                ShellScript(k + 1, script, tuple(words)),
            )
    return None


def _find_direct(argv: tuple[str, ...], where: str, first: int = 0) -> Invocation | None:
    if first >= len(argv):
        return None
    exe = _base(argv[first])
    if exe in _GUNICORN_EXECUTABLES:
        return Invocation("gunicorn", argv, first, parse_args(argv, first + 1, where=where))
    if _PYTHON.match(exe):
        k = first + 1
        while k < len(argv):
            w = argv[k]
            if w in _PY_LONG_VALUE:
                k += 2
                continue
            if not w.startswith("-") or w == "-" or w.startswith("--"):
                return None  # a script, stdin, or --version/--help: not `-m gunicorn`
            j = 1
            while j < len(w):
                c = w[j]
                if c == "m":
                    module, nxt = (
                        (w[j + 1 :], k + 1) if j + 1 < len(w) else (argv[k + 1] if k + 1 < len(argv) else "", k + 2)
                    )
                    if module in _GUNICORN_MODULES:
                        mod_index = k if j + 1 < len(w) else k + 1
                        return Invocation(f"python -m {module}", argv, mod_index, parse_args(argv, nxt, where=where))
                    return None
                if c == "c":
                    return None
                if c in _PY_VALUE_OPTS:
                    if j + 1 == len(w):
                        k += 1  # the value is the next word
                    break
                j += 1
            k += 1
        return None
    if exe == "env":
        k = first + 1
        while k < len(argv):
            w = argv[k]
            if w in ("-i", "-", "--ignore-environment"):
                k += 1
            elif _ENV_ASSIGNMENT.match(w):
                name = w.partition("=")[0]
                if name in ("GUNICORN_CMD_ARGS", "WEB_CONCURRENCY") and any("gunicorn" in a for a in argv[k:]):
                    raise GunicornArgsError(
                        f"{where}: env sets {name} on the command line, which unitctl does not rewrite",
                        hint=f"move {name} to Environment= and run gunicorn without env",
                    )
                k += 1
            elif w.startswith("-"):
                if any("gunicorn" in a for a in argv[k:]):
                    raise GunicornArgsError(
                        f"{where}: unitctl does not follow the env option {w!r}",
                        hint="use Environment=/WorkingDirectory= in the unit and run gunicorn without env",
                    )
                return None
            else:
                break
        sub = _find_direct(argv, where, k)
        if sub is None:
            return None
        return Invocation(f"env {sub.launcher}", argv, sub.exe_index, sub.args)
    if exe in ("poetry", "pipenv", "uv"):
        k = first + 1
        if exe == "uv":
            while k < len(argv) and argv[k] != "run":
                if argv[k] in _UV_VALUE_OPTS:
                    k += 2
                elif argv[k] in _UV_FLAGS:
                    k += 1
                else:
                    return None
        if k >= len(argv) or argv[k] != "run":
            return None
        k += 1
        while exe == "uv" and k < len(argv) and argv[k].startswith("-"):
            if argv[k] in _UV_VALUE_OPTS:
                k += 2
            elif argv[k] in _UV_FLAGS:
                k += 1
            elif argv[k].split("=", 1)[0] in _UV_VALUE_OPTS:
                k += 1
            else:
                raise GunicornArgsError(
                    f"{where}: unitctl does not know the `uv run` option {argv[k]!r}",
                    hint="run the venv's gunicorn directly (e.g. /srv/app/.venv/bin/gunicorn)",
                )
        sub = _find_direct(argv, where, k)
        if sub is None:
            return None
        return Invocation(f"{exe} run {sub.launcher}", argv, sub.exe_index, sub.args)
    return None


def identify_server(argv: Sequence[str]) -> str | None:
    """Name the non-Gunicorn server a command runs (uWSGI, Uvicorn...), for a clear refusal; None if unknown."""
    for w in argv[:8]:
        base = _base(w)
        if base in _OTHER_SERVERS:
            return _OTHER_SERVERS[base]
    return None


# -- workers ----------------------------------------------------------------------------------------------------


def auto_workers(cpu_count: int, max_workers: int | None = None) -> int:
    """Return Gunicorn's recommended worker count (2 x CPUs) + 1, capped by max_workers."""
    if cpu_count < 1:
        raise UsageError(f"CPU count {cpu_count} is not positive", hint="pass --workers N")
    n = 2 * cpu_count + 1
    return min(n, max_workers) if max_workers is not None else n


def resolve_workers(workers: int | str, *, cpu_count: int | None, max_workers: int | None = None) -> int:
    """Turn a --workers request (N or 'auto') into a worker count; refuse zero, negatives and junk."""
    if max_workers is not None and max_workers < 1:
        raise UsageError(f"--max-workers {max_workers} must be at least 1", hint="pass a positive number")
    if workers == "auto":
        if cpu_count is None:
            raise UsageError("cannot compute --workers auto: the CPU count is unknown", hint="pass --workers N")
        return auto_workers(cpu_count, max_workers)
    try:
        n = int(workers)
    except (TypeError, ValueError):
        raise UsageError(f"--workers {workers!r} is not a number", hint="pass --workers N or --workers auto") from None
    if n < 1:
        raise UsageError(f"--workers {n} must be at least 1", hint="pass --workers N with N >= 1, or auto")
    if max_workers is not None and n > max_workers:
        raise UsageError(f"--workers {n} is above --max-workers {max_workers}", hint="lower one of them")
    return n


# -- effective settings -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sourced:
    """A setting's value and where it came from (e.g. "command line", "GUNICORN_CMD_ARGS in Environment=")."""

    value: object
    source: str


@dataclass(frozen=True)
class Settings:
    """What Gunicorn will run with, given everything the unit says."""

    workers: Sourced  # int, or a str when not a literal number (e.g. "${WORKERS}")
    preload: Sourced  # bool, or None when unknown (an unreadable config file)
    app: Sourced  # str or None
    binds: Sourced  # tuple[str, ...]
    config_file: str | None
    invocation: Invocation
    environment: Mapping[str, str]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConfigFacts:
    """What a gunicorn.conf.py assigns at top level (literal values only; ... when computed)."""

    values: Mapping[str, object]
    computed: frozenset[str]


_UNKNOWN = object()


def parse_config_file(text: str, *, path: str = "gunicorn.conf.py") -> ConfigFacts:
    """Read the top-level assignments of a Gunicorn config file without running it."""
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as exc:
        raise GunicornArgsError(
            f"{path}: Gunicorn's config file is not valid Python ({exc.msg}, line {exc.lineno})", hint="fix it"
        ) from None
    values: dict[str, object] = {}
    computed: set[str] = set()
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = list(node.targets), node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            computed.add(node.target.id)
            values.pop(node.target.id, None)
            continue
        for t in targets:
            if isinstance(t, ast.Name) and value is not None:
                try:
                    values[t.id] = ast.literal_eval(value)
                    computed.discard(t.id)
                except ValueError:
                    computed.add(t.id)
                    values.pop(t.id, None)
    # Anything assigned under if/for/try/with or via globals() is invisible to this reading.
    for any_node in ast.walk(tree):
        if isinstance(any_node, ast.Name) and any_node.id in ("globals", "locals", "exec", "setattr"):
            computed.add("*")
    for stmt in tree.body:
        if not isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.Expr | ast.Import | ast.ImportFrom):
            if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                for sub in ast.walk(stmt):
                    if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                        computed.add(sub.id)
    return ConfigFacts(values, frozenset(computed))


def environment_assignments(value: str) -> list[tuple[str, str, int]]:
    """Split an Environment= value into (name, value, word index) like systemd (quotes and C escapes)."""
    out: list[tuple[str, str, int]] = []
    for k, w in enumerate(environment_words(value)):
        name, eq, val = w.value.partition("=")
        if eq and name:
            out.append((name, val, k))
    return out


@dataclass(frozen=True)
class EnvWord:
    """One word of an Environment= value with its span in the value."""

    value: str
    start: int
    end: int


def environment_words(value: str) -> list[EnvWord]:
    """Split an Environment= value into words with spans, as systemd reads that directive.

    Unlike Exec lines, ';' is an ordinary character there and an unknown escape makes systemd ignore the line.
    """
    from unitctl import execline

    try:
        words = execline.split_words(value, relax_escapes=False, what="Environment=")
    except RefusedError as exc:
        raise GunicornArgsError(f"Environment={value!r} cannot be read: {exc}", hint="fix its quoting") from None
    return [EnvWord(w.value, w.start, w.end) for w in words]


def unit_environment(unit: UnitFile | MergedUnit) -> tuple[dict[str, tuple[str, Entry, int]], list[str]]:
    """Return the unit's Environment= variables (name → (value, entry, word index)) and its EnvironmentFile= paths."""
    env: dict[str, tuple[str, Entry, int]] = {}
    for entry in unit.entries("Service", "Environment"):
        if not entry.value.strip():
            env.clear()  # an empty assignment resets the list
            continue
        for name, val, k in environment_assignments(entry.value):
            env[name] = (val, entry, k)
    files: list[str] = []
    for entry in unit.entries("Service", "EnvironmentFile"):
        if not entry.value.strip():
            files.clear()
            continue
        files.append(entry.value.strip())
    return env, files


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_FILE_LIMIT = 1 << 20  # bytes of an EnvironmentFile= or config file read; systemd's own files are far smaller


def parse_env_file(text: str) -> dict[str, str]:
    r"""Read an EnvironmentFile= as systemd does (env-file.c): KEY=VALUE lines, quotes, escapes, comments.

    Leading blanks and lines starting with '#' or ';' are skipped; a value may be single-quoted (literal),
    double-quoted (backslash escapes only \\ \" \` \$ and the newline) or bare (a backslash escapes the
    next character, at the end of a line it continues the value; trailing blanks dropped). A line without
    '=' or with an invalid name is ignored, as systemd ignores it.
    """
    out: dict[str, str] = {}
    state = "pre_key"
    key: list[str] = []
    value: list[str] = []
    trailing = 0  # blanks at the end of an unquoted value, dropped when the line ends

    def emit() -> None:
        name = "".join(key).rstrip()
        if _ENV_NAME.match(name):
            out[name] = "".join(value[: len(value) - trailing] if trailing else value)

    for c in text + "\n":
        if state == "pre_key":
            if c in "#;":
                state = "comment"
            elif c not in " \t\n\r":
                state, key, value, trailing = "key", [c], [], 0
        elif state == "key":
            if c in "\n\r":
                state = "pre_key"
            elif c == "=":
                state = "pre_value"
            else:
                key.append(c)
        elif state == "pre_value":
            if c in "\n\r":
                emit()
                state = "pre_key"
            elif c == "'":
                state = "single"
            elif c == '"':
                state = "double"
            elif c == "\\":
                state = "value_escape"
            elif c not in " \t":
                state, trailing = "value", 0
                value.append(c)
        elif state == "value":
            if c in "\n\r":
                emit()
                state = "pre_key"
            elif c == "\\":
                state, trailing = "value_escape", 0
            else:
                value.append(c)
                trailing = trailing + 1 if c in " \t" else 0
        elif state == "value_escape":
            state = "value"
            if c not in "\n\r":
                value.append(c)
        elif state == "single":
            if c == "'":
                state = "pre_value"
            else:
                value.append(c)
        elif state == "double":
            if c == '"':
                state = "pre_value"
            elif c == "\\":
                state = "double_escape"
            else:
                value.append(c)
        elif state == "double_escape":
            state = "double"
            if c in '"\\`$':
                value.append(c)
            elif c != "\n":
                value += ["\\", c]
        elif state == "comment":
            if c == "\\":
                state = "comment_escape"
            elif c in "\n\r":
                state = "pre_key"
        else:  # comment_escape
            state = "comment"
    if state in ("single", "double", "double_escape"):
        emit()  # systemd keeps a value whose quote is never closed
    return out


_DEFAULT_CONFIG = "Gunicorn's default in WorkingDirectory="

ReadFile = Callable[[str], "str | None"]


def effective_settings(
    unit: UnitFile | MergedUnit | str,
    *,
    read_file: ReadFile | None = None,
    invocation: tuple[Entry, Invocation] | None = None,
) -> Settings:
    """Work out workers, preload, app and binds as Gunicorn will see them, with the source of each.

    ``read_file(path)`` returns a file's text or None when it is missing; without it, the config file and
    EnvironmentFile= are not read and a warning says so.
    """
    from unitctl.unitfile import UnitFile as _UnitFile

    uf = _UnitFile.parse(unit) if isinstance(unit, str) else unit
    inv = invocation[1] if invocation is not None else find_gunicorn(uf).invocation
    warnings: list[str] = []
    env_entries, env_files = unit_environment(uf)
    env = {k: v[0] for k, v in env_entries.items()}
    for path in env_files:
        optional = path.startswith("-")
        real = path[1:] if optional else path
        text = read_file(real) if read_file is not None else None
        if text is None:
            warnings.append(
                f"EnvironmentFile={path} was not read; if it sets GUNICORN_CMD_ARGS or WEB_CONCURRENCY "
                "the effective settings may differ"
            )
            continue
        env.update(parse_env_file(text))

    cmd_args = inv.args
    env_args: GunicornArgs | None = None
    if "GUNICORN_CMD_ARGS" in env:
        try:
            env_argv = [w.value for w in shlex_words(env["GUNICORN_CMD_ARGS"])]
        except ValueError as exc:
            raise GunicornArgsError(
                f"GUNICORN_CMD_ARGS={env['GUNICORN_CMD_ARGS']!r}: Gunicorn cannot split it ({exc})",
                hint="fix its quoting",
            ) from None
        env_args = parse_args(env_argv, where="GUNICORN_CMD_ARGS")

    # The working directory Gunicorn starts in (and chdir()s to before reading the config file).
    cwd = (uf.get("Service", "WorkingDirectory") or "").strip().lstrip("-") or "/"
    config_path: str | None = None
    config_source = ""
    if cmd_args.values.get("config"):
        config_path, config_source = str(cmd_args.values["config"]), "-c on the command line"
    elif env_args is not None and env_args.values.get("config"):
        config_path, config_source = str(env_args.values["config"]), "-c in GUNICORN_CMD_ARGS"
    else:
        config_path, config_source = posixpath.join(cwd, "gunicorn.conf.py"), _DEFAULT_CONFIG
    facts: ConfigFacts | None = None
    config_file: str | None = None
    if config_path.startswith("python:"):
        warnings.append(f"config module {config_path} ({config_source}) was not read; check it for workers/preload_app")
    else:
        if config_path.startswith("file:"):
            config_path = config_path[len("file:") :]
        if not config_path.startswith("/"):
            config_path = posixpath.normpath(posixpath.join(cwd, config_path))
        text = read_file(config_path) if read_file is not None else None
        if text is None:
            if read_file is None or config_source != _DEFAULT_CONFIG:
                warnings.append(
                    f"Gunicorn config file {config_path} ({config_source}) was not read; "
                    "check that it does not set preload_app or workers"
                )
        else:
            config_file = config_path
            facts = parse_config_file(text, path=config_path)

    def pick(setting: str, default: object, default_source: str) -> Sourced:
        for args, label in ((cmd_args, "command line"), (env_args, "GUNICORN_CMD_ARGS")):
            if args is not None and setting in args.values:
                return Sourced(args.values[setting], label)
        if facts is not None:
            if setting in facts.values:
                return Sourced(facts.values[setting], f"config file {config_file}")
            if setting in facts.computed or "*" in facts.computed:
                return Sourced(None, f"config file {config_file} (computed)")
        return Sourced(default, default_source)

    if "WEB_CONCURRENCY" in env:
        wc: object = env["WEB_CONCURRENCY"]
        try:
            wc = int(str(wc))
        except ValueError:
            pass
        workers = pick("workers", wc, "WEB_CONCURRENCY")
    else:
        workers = pick("workers", 1, "default")
    if isinstance(workers.value, str):
        try:
            workers = Sourced(int(workers.value), workers.source)
        except ValueError:
            pass
    preload = pick("preload_app", False, "default")
    if preload.value is not None and not isinstance(preload.value, bool):
        preload = Sourced(bool(preload.value), preload.source)
    app = Sourced(cmd_args.app, "command line") if cmd_args.app else pick("wsgi_app", None, "default")
    binds = pick("bind", ["127.0.0.1:8000"], "default")
    bval = binds.value
    binds = Sourced(tuple(bval) if isinstance(bval, list | tuple) else (bval,) if bval else (), binds.source)
    return Settings(workers, preload, app, binds, config_file, inv, env, tuple(warnings))


def default_read_file(path: str) -> str | None:
    """Read a text file from disk, None when it does not exist or cannot be read (the edge for effective_settings)."""
    from unitctl.errors import InputError
    from unitctl.fsutil import read_input

    try:  # capped, regular files only: a -c naming a FIFO or /dev/zero must not hang or exhaust memory
        return read_input(Path(path), what="Gunicorn config file").decode("utf-8")
    except (InputError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class Found:
    """The one ExecStart= command of a unit that runs Gunicorn."""

    entry: Entry
    command: Command
    words: tuple[Word, ...]  # systemd words behind the argv given to find_invocation (argv[i] is words[i].value)
    invocation: Invocation


def find_gunicorn(unit: UnitFile | MergedUnit) -> Found:
    """Find the single effective ExecStart= command running Gunicorn; refuse none, several, or hidden options."""
    from unitctl import execline

    entries = unit.entries("Service", "ExecStart")
    effective: list[Entry] = []
    for e in entries:
        if not e.value.strip():
            effective = []  # "ExecStart=" resets the list (drop-ins use it to replace the command)
        else:
            effective.append(e)
    found: list[Found] = []
    others: list[list[str]] = []
    for e in effective:
        for cmd in execline.split(e.value):
            words = (cmd.words[0], *cmd.args)
            argv = [w.value for w in words]
            where = f"ExecStart= (line {e.line})" if e.line else "ExecStart="
            if not cmd.no_env_expand:
                split_vars = [a for a in argv[1:] if any(r.whole_word for r in execline.variables(a))]
                if split_vars:
                    kept = [a for a in argv if a not in split_vars]
                    try:
                        runs_gunicorn = find_invocation(kept, where=where) is not None
                    except RefusedError:
                        runs_gunicorn = True
                    if runs_gunicorn:
                        raise GunicornArgsError(
                            f"{where}: the argument {split_vars[0]!r} is split into words by systemd at start-up and "
                            "may hold Gunicorn options unitctl cannot see",
                            hint="write the options out in ExecStart= (or use ${NAME} for a single value)",
                        )
            inv = find_invocation(argv, where=where)
            if inv is None:
                others.append(argv)
                continue
            found.append(Found(e, cmd, words, inv))
    if not found:
        if not effective:
            raise NotGunicornError(
                "the unit has no ExecStart= (after resets)", hint="give the unit that runs gunicorn, or its drop-in"
            )
        raise describe_refusal_for(others[0])
    if len(found) > 1:
        lines = ", ".join(str(f.entry.line) for f in found)
        raise GunicornArgsError(
            f"the unit runs Gunicorn in {len(found)} ExecStart= commands (lines {lines})",
            hint="keep one (a drop-in replaces the command with an empty ExecStart= first)",
        )
    return found[0]


def describe_refusal_for(argv: Sequence[str]) -> NotGunicornError:
    """Build the NotGunicornError for a command that does not run Gunicorn."""
    server = identify_server(argv)
    if server:
        return NotGunicornError(
            f"ExecStart= runs {server} ({argv[0]}), not Gunicorn",
            hint="unitctl only rewrites Gunicorn units; edit this one by hand",
        )
    script = _shell_script(argv)
    if script is not None:
        first = script.split(None, 1)[0] if script.split() else ""
        if first.startswith("$"):
            return NotGunicornError(
                f"ExecStart= runs {argv[0]} -c {script!r}, whose program is the variable {first}: unitctl cannot"
                " tell that it is Gunicorn",
                hint="write the gunicorn path in ExecStart= (systemd expands variables in arguments, never in the"
                " program)",
            )
        return NotGunicornError(
            f"ExecStart= runs the shell script {script!r}, which does not run Gunicorn",
            hint="point ExecStart= at gunicorn, python -m gunicorn, or poetry/pipenv/uv run gunicorn",
        )
    return NotGunicornError(
        f"ExecStart= {argv[0]} does not run Gunicorn",
        hint="point ExecStart= at gunicorn, python -m gunicorn, or poetry/pipenv/uv run gunicorn",
    )


def _shell_script(argv: Sequence[str]) -> str | None:
    """Return the script of a ``sh -c SCRIPT`` command, None for any other command."""
    if not argv or _base(argv[0]) not in _SHELLS:
        return None
    for k, word in enumerate(argv[1:-1], 1):
        if word.startswith("-") and not word.startswith("--") and "c" in word[1:]:
            return argv[k + 1]
        if not word.startswith("-"):
            return None
    return None
