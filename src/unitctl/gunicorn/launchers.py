"""Finding Gunicorn in an ExecStart= command: one function per launcher that can stand in front of it.

Upstream: each launcher's own command line (``python`` (Python's -m/-c/-W/-X), ``env`` (coreutils), ``poetry run``,
``pipenv run``, ``uv run``, ``sh -c``) and systemd's ExecStart= (resets, several commands, variable expansion).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unitctl.errors import NotGunicornError, RefusedError
from unitctl.gunicorn.options import GunicornArgs, GunicornArgsError, parse_args
from unitctl.gunicorn.shellwords import ShellSyntaxError, ShellWord, shell_split

if TYPE_CHECKING:
    from unitctl.execline import Command, Word
    from unitctl.unitfile import Entry, MergedUnit, UnitFile

__all__ = [
    "Found",
    "Invocation",
    "ShellScript",
    "describe_refusal_for",
    "find_gunicorn",
    "find_invocation",
    "identify_server",
]


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
    if _base(argv[0]) in _SHELLS:
        return _shell_c(argv, where)
    return None


def _shell_c(argv: tuple[str, ...], where: str) -> Invocation | None:
    """``sh -c SCRIPT`` (or ``bash -ec`` …): find Gunicorn among the script's words, when it is a plain command."""
    k = 1
    while k < len(argv) and argv[k].startswith("-") and argv[k] != "-c" and "c" not in argv[k][1:]:
        k += 1
    if k >= len(argv) or not argv[k].startswith("-") or "c" not in argv[k][1:] or argv[k].startswith("--"):
        return None
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
    shell = ShellScript(k + 1, script, tuple(words))
    return Invocation(f"{sub.launcher} in {_base(argv[0])} -c", values, sub.exe_index, sub.args, shell)


def _find_direct(argv: tuple[str, ...], where: str, first: int = 0) -> Invocation | None:
    """Find Gunicorn run by the command starting at ``argv[first]``: one launcher function per kind of command."""
    if first >= len(argv):
        return None
    exe = _base(argv[first])
    if exe in _GUNICORN_EXECUTABLES:
        return Invocation("gunicorn", argv, first, parse_args(argv, first + 1, where=where))
    if _PYTHON.match(exe):
        return _python_m(argv, where, first)
    if exe == "env":
        return _env(argv, where, first)
    if exe in ("poetry", "pipenv", "uv"):
        return _tool_run(argv, where, first)
    return None


@dataclass(frozen=True)
class _Module:
    """``-m MODULE`` found in python's options."""

    name: str
    index: int  # argv index of the word holding the module name (the "-mgunicorn" word when attached)
    args: int  # argv index of the module's first argument


def _python_m(argv: tuple[str, ...], where: str, first: int) -> Invocation | None:
    """``python [OPTIONS] -m gunicorn``: skip Python's own options up to ``-m``; any other program is not Gunicorn."""
    k = first + 1
    while k < len(argv):
        w = argv[k]
        if w in _PY_LONG_VALUE:
            k += 2
            continue
        if not w.startswith("-") or w == "-" or w.startswith("--"):
            return None  # a script, stdin, or --version/--help: not `-m gunicorn`
        step = _python_cluster(argv, k)
        if isinstance(step, _Module):
            if step.name not in _GUNICORN_MODULES:
                return None
            return Invocation(f"python -m {step.name}", argv, step.index, parse_args(argv, step.args, where=where))
        if step is None:
            return None
        k = step
    return None


def _python_cluster(argv: tuple[str, ...], k: int) -> int | _Module | None:
    """Read python's short-option cluster ``argv[k]``: the next word's index, the ``-m`` module, or None for ``-c``."""
    w = argv[k]
    for j in range(1, len(w)):
        c = w[j]
        if c == "m":
            if j + 1 < len(w):
                return _Module(w[j + 1 :], k, k + 1)
            return _Module(argv[k + 1] if k + 1 < len(argv) else "", k + 1, k + 2)
        if c == "c":
            return None
        if c in _PY_VALUE_OPTS:
            return k + 2 if j + 1 == len(w) else k + 1  # the value is the next word, or the rest of this one
    return k + 1


def _env(argv: tuple[str, ...], where: str, first: int) -> Invocation | None:
    """``env [-i] [NAME=VALUE]... gunicorn``: refuse what would change Gunicorn's settings behind unitctl's back."""
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
    return None if sub is None else Invocation(f"env {sub.launcher}", argv, sub.exe_index, sub.args)


def _tool_run(argv: tuple[str, ...], where: str, first: int) -> Invocation | None:
    """``poetry run``, ``pipenv run`` and ``uv [OPTIONS] run [OPTIONS]`` in front of a Gunicorn command."""
    exe = _base(argv[first])
    k: int | None = first + 1
    if exe == "uv":
        k = _uv_options_before_run(argv, first + 1)
    if k is None or k >= len(argv) or argv[k] != "run":
        return None
    k += 1
    if exe == "uv":
        k = _uv_run_options(argv, k, where)
    sub = _find_direct(argv, where, k)
    return None if sub is None else Invocation(f"{exe} run {sub.launcher}", argv, sub.exe_index, sub.args)


def _uv_options_before_run(argv: tuple[str, ...], k: int) -> int | None:
    """Skip uv's global options up to ``run``; None at an option unitctl does not know (it may take a value)."""
    while k < len(argv) and argv[k] != "run":
        if argv[k] in _UV_VALUE_OPTS:
            k += 2
        elif argv[k] in _UV_FLAGS:
            k += 1
        else:
            return None
    return k


def _uv_run_options(argv: tuple[str, ...], k: int, where: str) -> int:
    """Skip ``uv run``'s options; refuse one unitctl does not know (it could hide what uv runs)."""
    while k < len(argv) and argv[k].startswith("-"):
        if argv[k] in _UV_VALUE_OPTS:
            k += 2
        elif argv[k] in _UV_FLAGS or argv[k].split("=", 1)[0] in _UV_VALUE_OPTS:
            k += 1
        else:
            raise GunicornArgsError(
                f"{where}: unitctl does not know the `uv run` option {argv[k]!r}",
                hint="run the venv's gunicorn directly (e.g. /srv/app/.venv/bin/gunicorn)",
            )
    return k


def identify_server(argv: Sequence[str]) -> str | None:
    """Name the non-Gunicorn server a command runs (uWSGI, Uvicorn...), for a clear refusal; None if unknown."""
    for w in argv[:8]:
        base = _base(w)
        if base in _OTHER_SERVERS:
            return _OTHER_SERVERS[base]
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
            _refuse_split_variables(cmd, argv, where)
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


def _refuse_split_variables(cmd: Command, argv: Sequence[str], where: str) -> None:
    """Refuse a Gunicorn command with a ``$NAME`` argument: systemd splits it into words unitctl cannot see."""
    from unitctl import execline

    split_vars = [cmd.words[i].value for i, ref in execline.command_variables(cmd) if ref.whole_word]
    if not split_vars:
        return
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
