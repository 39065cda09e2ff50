"""What Gunicorn will run with: its settings from defaults, config file, GUNICORN_CMD_ARGS and the command line.

Upstream: Gunicorn's ``Config`` and ``Application.load_config`` (low → high: defaults (``workers`` =
``$WEB_CONCURRENCY`` or 1) < config file (``-c``, else ``-c`` in ``GUNICORN_CMD_ARGS``, else ``gunicorn.conf.py``
in the working directory) < ``GUNICORN_CMD_ARGS`` (shlex-split) < the command line), and systemd's
Environment=/EnvironmentFile= (env-file.c) for the variables Gunicorn sees.
"""

from __future__ import annotations

import ast
import posixpath
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
        for name, literal in _assignments(node):
            if literal is _UNKNOWN:
                computed.add(name)
                values.pop(name, None)
                if name == "*":  # a star import may rebind every name assigned before it
                    values.clear()
            else:
                values[name] = literal
                computed.discard(name)
    computed |= _hidden_assignments(tree)
    return ConfigFacts(values, frozenset(computed))


def _assignments(node: ast.stmt) -> list[tuple[str, object]]:
    """Return (name, literal value or _UNKNOWN) for each name a top-level statement assigns plainly."""
    if isinstance(node, ast.AugAssign):
        return [(node.target.id, _UNKNOWN)] if isinstance(node.target, ast.Name) else []
    if isinstance(node, ast.Import | ast.ImportFrom):
        # `from common import preload_app` binds a value this reading cannot see; `import *` may bind any name.
        return [((a.asname or a.name).split(".")[0], _UNKNOWN) for a in node.names]
    if isinstance(node, ast.Assign):
        targets, value = list(node.targets), node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets, value = [node.target], node.value
    else:
        return []
    names = [t.id for t in targets if isinstance(t, ast.Name)]
    if not names:
        return []
    try:
        literal: object = ast.literal_eval(value)
    except ValueError:
        literal = _UNKNOWN
    return [(name, literal) for name in names]


def _hidden_assignments(tree: ast.Module) -> set[str]:
    """Return the names assigned where this reading cannot follow: under if/for/try/with ("*" for globals() & co)."""
    hidden: set[str] = set()
    if any(isinstance(n, ast.Name) and n.id in ("globals", "locals", "exec", "setattr") for n in ast.walk(tree)):
        hidden.add("*")
    plain = ast.Assign | ast.AnnAssign | ast.AugAssign | ast.Expr | ast.Import | ast.ImportFrom
    definitions = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    for stmt in tree.body:
        if not isinstance(stmt, plain | definitions):
            hidden |= {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return hidden


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


ENV_FILE_LIMIT = 1 << 20  # bytes of an EnvironmentFile= or config file read; systemd's own files are far smaller


def parse_env_file(text: str) -> dict[str, str]:
    r"""Read an EnvironmentFile= as systemd does (env-file.c): KEY=VALUE lines, quotes, escapes, comments.

    Leading blanks and lines starting with '#' or ';' are skipped; a value may be single-quoted (literal),
    double-quoted (backslash escapes only \\ \" \` \$ and the newline) or bare (a backslash escapes the
    next character, at the end of a line it continues the value; trailing blanks dropped). A line without
    '=' or with an invalid name is ignored, as systemd ignores it.
    """
    reader = _EnvFileReader()
    step = reader.steps()
    state = "pre_key"
    for c in text:
        state = step[state](c)
    if state in ("single", "double", "double_escape", "value_escape"):
        reader.emit()  # at the end of the file systemd keeps a value whose quote (or escape) is never closed
    else:
        step[state]("\n")  # the end of the file ends the last line
    return reader.out


class _EnvFileReader:
    """env-file.c's parse_env_file_internal: one method per state, each taking a character, returning the next state."""

    def __init__(self) -> None:
        self.out: dict[str, str] = {}
        self.key: list[str] = []
        self.value: list[str] = []
        self.trailing = 0  # blanks at the end of an unquoted value, dropped when the line ends

    def steps(self) -> dict[str, Callable[[str], str]]:
        """Return state name → its method."""
        return {
            "pre_key": self.pre_key,
            "key": self.in_key,
            "pre_value": self.pre_value,
            "value": self.in_value,
            "value_escape": self.value_escape,
            "single": self.single,
            "double": self.double,
            "double_escape": self.double_escape,
            "comment": self.comment,
            "comment_escape": lambda c: "comment",
        }

    def emit(self) -> None:
        """Keep the assignment just read when its name is valid."""
        name = "".join(self.key).rstrip()
        if execline.is_env_name(name):
            value = self.value[: len(self.value) - self.trailing] if self.trailing else self.value
            self.out[name] = "".join(value)

    def pre_key(self, c: str) -> str:
        """Skip blanks before a key; '#' and ';' start a comment."""
        if c in "#;":
            return "comment"
        if c in " \t\n\r":
            return "pre_key"
        self.key, self.value, self.trailing = [c], [], 0
        return "key"

    def in_key(self, c: str) -> str:
        """Read the key up to '='; a line without one is dropped."""
        if c in "\n\r":
            return "pre_key"
        if c == "=":
            return "pre_value"
        self.key.append(c)
        return "key"

    def pre_value(self, c: str) -> str:
        """Skip blanks after '=' (and after a closing quote); a quote or a backslash starts a value."""
        if c in "\n\r":
            self.emit()
            return "pre_key"
        quoted = {"'": "single", '"': "double", "\\": "value_escape"}
        if c in quoted:
            return quoted[c]
        if c in " \t":
            return "pre_value"
        self.trailing = 0
        self.value.append(c)
        return "value"

    def in_value(self, c: str) -> str:
        """Read a bare value to the end of the line, counting trailing blanks."""
        if c in "\n\r":
            self.emit()
            return "pre_key"
        if c == "\\":
            self.trailing = 0
            return "value_escape"
        self.value.append(c)
        self.trailing = self.trailing + 1 if c in " \t" else 0
        return "value"

    def value_escape(self, c: str) -> str:
        """Take the escaped character; an escaped newline continues the value."""
        if c not in "\n\r":
            self.value.append(c)
        return "value"

    def single(self, c: str) -> str:
        """Take everything up to the closing single quote literally."""
        if c == "'":
            return "pre_value"
        self.value.append(c)
        return "single"

    def double(self, c: str) -> str:
        """Read up to the closing double quote; a backslash escapes."""
        if c == '"':
            return "pre_value"
        if c == "\\":
            return "double_escape"
        self.value.append(c)
        return "double"

    def double_escape(self, c: str) -> str:
        """Inside double quotes only \\ \" \\` \\$ and the newline are escapes; any other backslash is kept."""
        if c in '"\\`$':
            self.value.append(c)
        elif c != "\n":
            self.value += ["\\", c]
        return "double"

    def comment(self, c: str) -> str:
        """Skip a comment to the end of the line (a backslash escapes the next character, a newline too)."""
        if c == "\\":
            return "comment_escape"
        return "pre_key" if c in "\n\r" else "comment"


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
    env = _environment(uf, read_file, warnings)
    layers = _Layers(inv.args, _env_args(env))
    # The working directory Gunicorn starts in (and chdir()s to before reading the config file).
    cwd = (uf.get("Service", "WorkingDirectory") or "").strip().lstrip("-") or "/"
    layers.config_file, layers.facts = _config_file(layers, cwd, read_file, warnings)

    default_workers: object = 1
    workers_source = "default"
    if "WEB_CONCURRENCY" in env:
        default_workers, workers_source = _as_int(env["WEB_CONCURRENCY"]), "WEB_CONCURRENCY"
    workers = layers.pick("workers", default_workers, workers_source)
    workers = Sourced(_as_int(workers.value), workers.source)
    preload = layers.pick("preload_app", False, "default")
    if preload.value is not None and not isinstance(preload.value, bool):
        preload = Sourced(bool(preload.value), preload.source)
    app = Sourced(inv.args.app, "command line") if inv.args.app else layers.pick("wsgi_app", None, "default")
    binds = layers.pick("bind", ["127.0.0.1:8000"], "default")
    bval = binds.value
    binds = Sourced(tuple(bval) if isinstance(bval, list | tuple) else (bval,) if bval else (), binds.source)
    return Settings(workers, preload, app, binds, layers.config_file, inv, env, tuple(warnings))


def _as_int(value: object) -> object:
    """Return a string that is a literal integer as an int (Gunicorn's int()), anything else unchanged."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _environment(uf: UnitFile | MergedUnit, read_file: ReadFile | None, warnings: list[str]) -> dict[str, str]:
    """Return the variables Gunicorn starts with: Environment=, then each EnvironmentFile= that could be read."""
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
    return env


def _env_args(env: Mapping[str, str]) -> GunicornArgs | None:
    """Parse GUNICORN_CMD_ARGS as Gunicorn does (shlex-split), None when it is not set."""
    if "GUNICORN_CMD_ARGS" not in env:
        return None
    try:
        env_argv = [w.value for w in shlex_words(env["GUNICORN_CMD_ARGS"])]
    except ValueError as exc:
        raise GunicornArgsError(
            f"GUNICORN_CMD_ARGS={env['GUNICORN_CMD_ARGS']!r}: Gunicorn cannot split it ({exc})",
            hint="fix its quoting",
        ) from None
    return parse_args(env_argv, where="GUNICORN_CMD_ARGS")


@dataclass
class _Layers:
    """Where a setting can come from, highest first: command line, GUNICORN_CMD_ARGS, config file, default."""

    cmd_args: GunicornArgs
    env_args: GunicornArgs | None
    config_file: str | None = None
    facts: ConfigFacts | None = None

    def pick(self, setting: str, default: object, default_source: str) -> Sourced:
        """Return the value that wins for ``setting`` and where it came from."""
        for args, label in ((self.cmd_args, "command line"), (self.env_args, "GUNICORN_CMD_ARGS")):
            if args is not None and setting in args.values:
                return Sourced(args.values[setting], label)
        if self.facts is not None:
            if setting in self.facts.values:
                return Sourced(self.facts.values[setting], f"config file {self.config_file}")
            if setting in self.facts.computed or "*" in self.facts.computed:
                return Sourced(None, f"config file {self.config_file} (computed)")
        return Sourced(default, default_source)


def _config_file(
    layers: _Layers, cwd: str, read_file: ReadFile | None, warnings: list[str]
) -> tuple[str | None, ConfigFacts | None]:
    """Find the config file Gunicorn reads (-c, -c in GUNICORN_CMD_ARGS, else gunicorn.conf.py) and read it."""
    if layers.cmd_args.values.get("config"):
        config_path, config_source = str(layers.cmd_args.values["config"]), "-c on the command line"
    elif layers.env_args is not None and layers.env_args.values.get("config"):
        config_path, config_source = str(layers.env_args.values["config"]), "-c in GUNICORN_CMD_ARGS"
    else:
        config_path, config_source = posixpath.join(cwd, "gunicorn.conf.py"), _DEFAULT_CONFIG
    if config_path.startswith("python:"):
        warnings.append(f"config module {config_path} ({config_source}) was not read; check it for workers/preload_app")
        return None, None
    config_path = config_path.removeprefix("file:")
    if not config_path.startswith("/"):
        config_path = posixpath.normpath(posixpath.join(cwd, config_path))
    text = read_file(config_path) if read_file is not None else None
    if text is None:
        if read_file is None or config_source != _DEFAULT_CONFIG:
            warnings.append(
                f"Gunicorn config file {config_path} ({config_source}) was not read; "
                "check that it does not set preload_app or workers"
            )
        return None, None
    return config_path, parse_config_file(text, path=config_path)


def default_read_file(path: str) -> str | None:
    """Read a text file from disk, None when it does not exist or cannot be read (the edge for effective_settings)."""
    from unitctl.errors import InputError
    from unitctl.fsutil import read_input

    try:  # capped, regular files only: a -c naming a FIFO or /dev/zero must not hang or exhaust memory
        return read_input(Path(path), what="Gunicorn config file").decode("utf-8")
    except (InputError, UnicodeDecodeError):
        return None
