"""Load ``unitctl.toml`` and merge it under the command-line flags (flags win).

The file lives in the current directory. Top-level keys are shared by every command
(only ``name`` today); each command reads its own table (``[render]``, ``[apply]``,
``[rollback]``, ``[status]``, ``[history]``) with a schema the command passes in. Unknown tables, unknown
keys and values of the wrong type are usage errors (exit 2) that name the key.

``unitctl deploy`` is the server's command: it reads ``[deploy]`` (defaults for every service) and
``[deploy.SERVICE]`` (one service's settings, over the defaults) from ``--config FILE`` or SERVER_CONFIG,
never from the current directory (see ``service_section``).

    cfg = load()                                   # None when there is no unitctl.toml
    values = cfg.section("render", RENDER_SCHEMA)  # {} for a missing table
    merged = merge(flags, values)                  # a flag left unset takes the file's value
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from unitctl.errors import UsageError
from unitctl.fsutil import read_input

CONFIG_NAME = "unitctl.toml"

# Every table a unitctl command reads; a table name outside this list is a typo. rewrite, diff and verify
# take their desired state from flags only: a [rewrite] table that changed units silently would surprise.
KNOWN_TABLES = ("render", "apply", "rollback", "status", "history", "deploy")
# Where 'unitctl deploy' reads its settings without --config: root's file on the server, whatever the current
# directory (a forced command runs in the deploy user's home, an admin may stand in the app's checkout).
SERVER_CONFIG = Path("/etc/unitctl/unitctl.toml")


class Kind(Enum):
    """The value types a unitctl.toml key can have."""

    STR = "a string"
    PATH = "a path string (relative paths are relative to unitctl.toml)"
    INT = "a positive integer"
    COUNT = "an integer of 0 or more"
    BOOL = "true or false"
    WORKERS = 'a positive integer or "auto"'
    STR_LIST = "a string or a list of strings"
    STR_MAP = "a table of string values"
    NUMBER = "a finite number above 0"


Schema = Mapping[str, Kind]

# Keys allowed at the top level of unitctl.toml, shared by every command.
TOP_LEVEL: Schema = {"name": Kind.STR}

RENDER_SCHEMA: Schema = {
    "name": Kind.STR,
    "app": Kind.STR,
    "workers": Kind.WORKERS,
    "max_workers": Kind.INT,
    "worker_class": Kind.STR,
    "bind": Kind.STR_LIST,
    "working_dir": Kind.STR,
    "venv": Kind.STR,
    "user": Kind.STR,
    "group": Kind.STR,
    "env_file": Kind.STR_LIST,
    "env": Kind.STR_MAP,
    "template": Kind.PATH,
    "socket": Kind.BOOL,
    "control_socket": Kind.BOOL,
    "description": Kind.STR,
}


@dataclass(frozen=True)
class Config:
    """A parsed unitctl.toml: its path and raw data, validated per table on demand."""

    path: Path
    data: Mapping[str, Any]

    def section(self, table: str, schema: Schema) -> dict[str, Any]:
        """Return the top-level keys in ``schema`` overlaid by ``[table]``, validated."""
        if table not in KNOWN_TABLES:
            raise ValueError(f"unknown unitctl.toml table {table!r}")  # a programming error
        result: dict[str, Any] = {}
        for key, value in self.data.items():
            if isinstance(value, dict) and key in KNOWN_TABLES:
                continue
            if key in schema:
                result[key] = self._check(key, value, schema[key], where="top level")
        raw = self.data.get(table, {})
        for key, value in raw.items():
            if key not in schema:
                raise UsageError(
                    f"{self.path}: unknown key {key!r} in [{table}]",
                    hint=f"known keys: {', '.join(sorted(schema))}",
                )
            result[key] = self._check(key, value, schema[key], where=f"[{table}]")
        return result

    def service_section(self, table: str, unit: str, schema: Schema) -> dict[str, Any]:
        """Return ``[table]``'s keys overlaid by ``[table.NAME]`` for ``unit`` (NAME or NAME.service), validated.

        Every service's sub-table is checked, not only ``unit``'s: a typo in another service is found on
        the first deploy of any, not on that service's next deploy.
        """
        from unitctl.unitname import validate_unit_name

        if table not in KNOWN_TABLES:
            raise ValueError(f"unknown unitctl.toml table {table!r}")  # a programming error
        common: dict[str, Any] = {}
        own: dict[str, Any] = {}
        for key, value in self.data.get(table, {}).items():
            if isinstance(value, dict):
                try:
                    name = validate_unit_name(key)
                except UsageError:
                    name = ""
                if not name.endswith(".service"):
                    raise UsageError(
                        f"{self.path}: [{table}.{key}] does not name a service",
                        hint=f"name the table after the service, e.g. [{table}.myapp]",
                    )
                checked = {}
                for sub_key, sub_value in value.items():
                    if sub_key not in schema:
                        raise UsageError(
                            f"{self.path}: unknown key {sub_key!r} in [{table}.{key}]",
                            hint=f"known keys: {', '.join(sorted(schema))}",
                        )
                    checked[sub_key] = self._check(sub_key, sub_value, schema[sub_key], where=f"[{table}.{key}]")
                if name == unit:
                    own.update(checked)
                continue
            if key not in schema:
                raise UsageError(
                    f"{self.path}: unknown key {key!r} in [{table}]",
                    hint=f"known keys: {', '.join(sorted(schema))}, or a [{table}.SERVICE] table",
                )
            common[key] = self._check(key, value, schema[key], where=f"[{table}]")
        return {**common, **own}

    def _check(self, key: str, value: Any, kind: Kind, *, where: str) -> Any:
        bad = UsageError(
            f"{self.path}: {key} in {where} must be {kind.value}, not {value!r}",
            hint=f"fix {key} in {self.path.name}",
        )
        checked = _NORMALISE[kind](value)
        if checked is _INVALID:
            raise bad
        if kind is Kind.PATH and checked:
            return str(self.path.parent / Path(checked).expanduser())
        return checked


_INVALID: Any = object()  # what a normaliser returns for a value its Kind rejects


def _as_str(value: Any) -> Any:
    return value if isinstance(value, str) else _INVALID


def _as_bool(value: Any) -> Any:
    return value if isinstance(value, bool) else _INVALID


def _as_count(value: Any, least: int) -> Any:
    # bool is an int subclass in Python; `workers = true` is a mistake, not 1.
    return value if not isinstance(value, bool) and isinstance(value, int) and value >= least else _INVALID


def _as_workers(value: Any) -> Any:
    return value if value == "auto" else _as_count(value, 1)


def _as_str_list(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return _INVALID
    return list(value)


def _as_str_map(value: Any) -> Any:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return _INVALID
    return dict(value)


# One normaliser per Kind: the value as unitctl uses it, or _INVALID (a PATH is then made relative to the file).
_NORMALISE: dict[Kind, Callable[[Any], Any]] = {
    Kind.STR: _as_str,
    Kind.PATH: _as_str,
    Kind.BOOL: _as_bool,
    Kind.INT: lambda value: _as_count(value, 1),
    Kind.COUNT: lambda value: _as_count(value, 0),
    Kind.NUMBER: lambda value: value if is_positive_number(value) else _INVALID,
    Kind.WORKERS: _as_workers,
    Kind.STR_LIST: _as_str_list,
    Kind.STR_MAP: _as_str_map,
}


def is_positive_number(value: object) -> bool:
    """Tell whether ``value`` is a finite number above 0 (the one rule for seconds, from flags and unitctl.toml)."""
    # bool is an int subclass; nan compares false with everything and inf never elapses: both would hang the guard.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def positive_number_flag(flag: str, value: float | None) -> float | None:
    """Return a flag's value unchanged if unset or a finite number above 0; else raise UsageError naming the flag."""
    if value is None or is_positive_number(value):
        return value
    raise UsageError(f"{flag} must be {Kind.NUMBER.value}, not {value:g}", hint=f"give it in seconds, e.g. {flag} 5")


def load(path: Path | None = None, *, cwd: Path | None = None) -> Config | None:
    """Read ``path`` (default: ./unitctl.toml); return None when the default file does not exist."""
    explicit = path is not None
    if path is None and cwd is None:
        try:
            cwd = Path.cwd()
        except OSError:
            return None  # the current directory was removed: there is no ./unitctl.toml to read
    target = path if path is not None else (cwd or Path(".")) / CONFIG_NAME
    if not explicit and not os.path.lexists(target):
        return None
    raw = read_input(target, what="config file", hint="check the path")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{target}: not UTF-8 text", hint="save it as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{target}: invalid TOML: {exc}", hint="fix the syntax") from exc
    _check_shape(target, data)
    return Config(target, data)


def load_server(path: Path | None = None) -> Config | None:
    """Read the deploy settings: ``path`` when given, else SERVER_CONFIG; None when that one does not exist."""
    if path is not None:
        return load(path)
    if not os.path.lexists(SERVER_CONFIG):
        return None
    return load(SERVER_CONFIG)


def _check_shape(path: Path, data: Mapping[str, Any]) -> None:
    """Reject unknown tables and unknown top-level keys whatever command runs."""
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in KNOWN_TABLES:
                raise UsageError(
                    f"{path}: unknown table [{key}]",
                    hint=f"known tables: {', '.join(f'[{t}]' for t in KNOWN_TABLES)}",
                )
        elif key not in TOP_LEVEL:
            raise UsageError(
                f"{path}: unknown top-level key {key!r}",
                hint="put command settings under their table, e.g. [render]",
            )


def merge(flags: Mapping[str, Any], file_values: Mapping[str, Any]) -> dict[str, Any]:
    """Overlay the flags that were given (not None, not an empty list) on the file's values."""
    result = dict(file_values)
    for key, value in flags.items():
        if value is None or (isinstance(value, list | tuple | dict) and not value):
            result.setdefault(key, value)
            continue
        result[key] = value
    return result
