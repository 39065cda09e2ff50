"""Gunicorn's command line as Gunicorn itself reads it: the option table and an argparse-faithful parser.

Upstream: Gunicorn's ``gunicorn.config`` (``KNOWN_SETTINGS``, ``Config.parser()``) and Python 3.11's argparse.
The table is Gunicorn's own (``_table.py``, generated from ``gunicorn.config.KNOWN_SETTINGS`` by
scripts/gen_gunicorn_options.py). ``parse_args`` mirrors argparse as Gunicorn configures it (``allow_abbrev`` on):
``-w4``, ``-w=4``, ``--workers=4``, unambiguous abbreviations, clusters of short flags (``-Dw4``), ``--`` and
options after the APP_MODULE; it keeps, for every option, which argv word (and which part of it) carries the flag
and the value, so that ``rewrite.py`` can change exactly those bytes. It takes time linear in the number of words
(argparse itself is quadratic in the number of options: a unit with 10k continuation lines took 7.5 s when every
parse was cross-checked with it); Gunicorn's own parser is the oracle it is tested against
(tests/unit/test_gunicorn.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from unitctl.errors import RefusedError
from unitctl.gunicorn._table import GUNICORN_VERSION, OPTIONS

__all__ = ["GUNICORN_VERSION", "GunicornArgs", "GunicornArgsError", "OptionSpec", "OptionUse", "parse_args", "spec"]


class GunicornArgsError(RefusedError):
    """Gunicorn arguments that Gunicorn would reject or that unitctl cannot follow exactly."""


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
    pattern, optionals, double_dash = _classify(words, where)
    scan = _Scan(words, pattern, start, where)
    uses = scan.uses
    positionals: list[tuple[int, str]] = []
    # argparse gives APP_MODULE (nargs="*") the first run of positionals; one after an option is left over.
    leftover: list[str] = []
    i = 0
    while i < len(words):
        if pattern[i] == "O":
            i = scan.option(i, optionals[i])
            continue
        if positionals and uses and uses[-1].index > positionals[0][0]:
            leftover.append(words[i])
        elif pattern[i] == "A":
            positionals.append((start + i, words[i]))
        i += 1
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


def _classify(words: Sequence[str], where: str) -> tuple[list[str], dict[int, _Tuple], int | None]:
    """Classify every word first, as argparse does: "O" option, "A" argument, "-" the "--" that ends options.

    An ambiguous spelling fails even where it would be a value, as in argparse.
    """
    pattern: list[str] = []
    optionals: dict[int, _Tuple] = {}
    double_dash: int | None = None
    for i, word in enumerate(words):
        if double_dash is not None:
            pattern.append("A")
        elif word == "--":
            double_dash = i
            pattern.append("-")
        elif (tup := _parse_optional(word, where)) is None:
            pattern.append("A")
        else:
            optionals[i] = tup
            pattern.append("O")
    return pattern, optionals, double_dash


@dataclass
class _Scan:
    """One parse: the words, their classes, where argv[start:] begins, and the option uses found so far."""

    words: Sequence[str]
    pattern: Sequence[str]
    start: int
    where: str
    uses: list[OptionUse] = field(default_factory=list)

    def option(self, i: int, tup: _Tuple) -> int:
        """Record the option(s) of ``words[i]`` (each flag of a cluster like -Dw4); return the next index."""
        words, pattern, start, uses, where = self.words, self.pattern, self.start, self.uses, self.where
        s, flag, explicit = tup
        word = words[i]
        if s is None:
            raise GunicornArgsError(
                f"{where}: Gunicorn has no option {word!r} (Gunicorn {GUNICORN_VERSION})",
                hint="remove it or spell a Gunicorn option (gunicorn --help lists them)",
            )
        offset = 0  # where the current option starts inside the word
        while explicit is not None and not s.takes_value and flag[1] != "-" and explicit != "":
            # A switch followed by more short flags in the same word: -Dw4 is -D, then -w4.
            uses.append(OptionUse(s.setting, flag, "-" + word[offset + 1], start + i, None, None, None, True))
            offset += 1  # the next flag is "-" + the character after this one
            nxt = "-" + explicit[0]
            if nxt not in _BY_FLAG:
                raise GunicornArgsError(
                    f"{where}: Gunicorn rejects {word!r}: {flag} takes no value, got {explicit!r}",
                    hint=f"write {flag} as a word of its own",
                )
            s, flag, explicit = _BY_FLAG[nxt], nxt, explicit[1:] or None
        cluster = offset > 0
        if explicit is not None:
            if not s.takes_value:
                raise GunicornArgsError(
                    f"{where}: Gunicorn rejects {word!r}: {flag} takes no value, got {explicit!r}",
                    hint=f"write just {flag} (it is a switch)"
                    if s.setting != "preload_app"
                    else "write just --preload",
                )
            vstart = len(word) - len(explicit)
            written = "-" + word[offset + 1] if cluster else word[:vstart].rstrip("=")
            uses.append(OptionUse(s.setting, flag, written, start + i, explicit, start + i, vstart, cluster))
            return i + 1
        written = "-" + word[offset + 1] if cluster else word
        if s.takes_value and i + 1 < len(words) and pattern[i + 1] == "A":
            uses.append(OptionUse(s.setting, flag, written, start + i, words[i + 1], start + i + 1, 0, cluster))
            return i + 2
        if s.takes_value and s.nargs != "?":
            raise GunicornArgsError(
                f"{where}: Gunicorn rejects {word!r}: {flag} expects a value", hint=f"give {flag} its value"
            )
        uses.append(OptionUse(s.setting, flag, written, start + i, None, None, None, cluster))
        return i + 1


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
