"""What Gunicorn will run with: its settings from defaults, config file, GUNICORN_CMD_ARGS and the command line.

Upstream: Gunicorn's ``Config`` and ``Application.load_config`` (low → high: defaults (``workers`` =
``$WEB_CONCURRENCY`` or 1) < config file (``-c``, else ``-c`` in ``GUNICORN_CMD_ARGS``, else ``gunicorn.conf.py``
in the working directory) < ``GUNICORN_CMD_ARGS`` (shlex-split) < the command line), and systemd's
Environment=/EnvironmentFile= (env-file.c) for the variables Gunicorn sees.
"""

from __future__ import annotations

import ast
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from unitctl import execline
from unitctl.gunicorn.launchers import Invocation, find_gunicorn
from unitctl.gunicorn.options import GunicornArgs, GunicornArgsError, parse_args
from unitctl.gunicorn.shellwords import shlex_words

if TYPE_CHECKING:
    from unitctl.unitfile import Entry, MergedUnit, UnitFile

__all__ = [
    "ENV_FILE_LIMIT",
    "ConfigFacts",
    "ReadFile",
    "Settings",
    "Sourced",
    "default_read_file",
    "effective_settings",
    "parse_config_file",
    "parse_env_file",
    "unit_environment",
]


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


def unit_environment(unit: UnitFile | MergedUnit) -> tuple[dict[str, tuple[str, Entry, int]], list[str]]:
    """Return the unit's Environment= variables (name → (value, entry, word index)) and its EnvironmentFile= paths."""
    env: dict[str, tuple[str, Entry, int]] = {}
    for entry in unit.entries("Service", "Environment"):
        if not entry.value.strip():
            env.clear()  # an empty assignment resets the list
            continue
        for name, val, k in execline.environment_assignments(entry.value):
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
