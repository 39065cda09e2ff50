"""Typed, frozen settings per command: the flags merged over the command's table of ./unitctl.toml (flags win).

Each settings class is one unitctl.toml table; a field with a ``Kind`` in its metadata is a key of that table
(validated by config.py, whose messages name the key), the others come from flags only.

    s = load(ApplySettings, "apply", name="app", guarded=None, ...)   # None / empty: not given on the command line
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from unitctl.config import Kind
from unitctl.desired import DesiredOptions
from unitctl.errors import UsageError

if TYPE_CHECKING:
    from unitctl.render import RenderFlags


def _key(kind: Kind) -> Any:
    """Declare a field that unitctl.toml may set, of this kind."""
    return field(default=None, metadata={"kind": kind})


@dataclass(frozen=True)
class UnitSettings:
    """What every command about one unit reads: its name and where its history lives."""

    name: str | None = _key(Kind.STR)
    history_dir: str | None = _key(Kind.PATH)

    @property
    def unit(self) -> str:
        """Return the validated unit name, or raise UsageError when none was given."""
        return unit_name(self.name)

    @property
    def history_path(self) -> Path:
        from unitctl import history

        return Path(self.history_dir) if self.history_dir else history.DEFAULT_DIR


@dataclass(frozen=True)
class StatusSettings(UnitSettings):
    """``[status]``: a unit's state, history and readiness."""

    ready_url: str | None = _key(Kind.STR)
    backend: str | None = _key(Kind.STR)


@dataclass(frozen=True)
class HistorySettings(StatusSettings):
    """``[history]``: list the records, or prune them to the ``keep`` newest (it accepts [status]'s keys)."""

    limit: int = 20
    prune: bool = False
    keep: int | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class RollbackSettings(StatusSettings):
    """``[rollback]``: switch back to the previous good deploy, guarded."""

    repo: str | None = _key(Kind.PATH)
    ready_timeout: float | None = _key(Kind.NUMBER)
    ready_interval: float | None = _key(Kind.NUMBER)
    build_cmd: list[str] | None = _key(Kind.STR_LIST)  # hooks (docs/hooks.md): each point may repeat
    pre_switch_cmd: list[str] | None = _key(Kind.STR_LIST)
    post_ready_cmd: list[str] | None = _key(Kind.STR_LIST)
    hook_timeout: float | None = _key(Kind.NUMBER)
    edit_template: bool = False


@dataclass(frozen=True)
class ApplySettings(RollbackSettings):
    """``[apply]``: install a unit and restart its service, guarded or not."""

    unit_file: str | None = _key(Kind.PATH)
    guarded: bool | None = _key(Kind.BOOL)
    rev: str | None = _key(Kind.STR)
    strategy: str | None = _key(Kind.STR)
    fail_after: int | None = _key(Kind.COUNT)
    pre_import: str | None = _key(Kind.STR)
    no_pre_import: bool | None = _key(Kind.BOOL)
    canary: bool | None = _key(Kind.BOOL)
    dry_run: bool = False


S = TypeVar("S", bound=UnitSettings)


def schema(cls: type[UnitSettings]) -> dict[str, Kind]:
    """Return the unitctl.toml keys of a settings class and their kinds."""
    return {f.name: f.metadata["kind"] for f in fields(cls) if "kind" in f.metadata}


def load(cls: type[S], table: str, /, **flags: Any) -> S:
    """Merge the flags over ``[table]`` of ./unitctl.toml (a flag that is None or empty was not given)."""
    from unitctl import config

    keys = schema(cls)
    cfg = config.load()
    values = cfg.section(table, keys) if cfg is not None else {}
    merged = config.merge({k: v for k, v in flags.items() if k in keys}, values)
    rest = {k: v for k, v in flags.items() if k not in keys}
    return cls(**{k: merged.get(k) for k in keys}, **rest)


def unit_name(value: str | None) -> str:
    """Return the validated unit name, or raise UsageError when none was given."""
    from unitctl.unitname import validate_unit_name

    if not value:
        raise UsageError("which unit? pass NAME (or set name in unitctl.toml)", hint="e.g. 'unitctl apply myapp'")
    return validate_unit_name(value)


def unit_or_none(value: str | None) -> str | None:
    """Return the unit name as systemd spells it, or None when none or no valid one was given."""
    try:
        return unit_name(value)
    except UsageError:
        return None


def default_argv() -> tuple[str, ...]:
    """Return this command line as the lock and the journal name it (program name without its path)."""
    return tuple(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))


@dataclass(frozen=True)
class DiffSettings:
    """``unitctl diff`` (flags only): the installed unit NAME under ``root`` against the desired one."""

    name: str
    desired: DesiredOptions = DesiredOptions()
    root: str = "/"


@dataclass(frozen=True)
class VerifySettings:
    """``unitctl verify`` (flags only): a candidate unit file, loaded as ``name``."""

    file: str
    name: str | None = None
    offline: bool = False


@dataclass(frozen=True)
class RewriteSettings:
    """``unitctl rewrite`` (flags only): the Gunicorn command line of FILE changed, and where the result goes."""

    file: str
    workers: str | None = None
    max_workers: int | None = None
    no_preload: bool = False
    in_place: bool = False
    drop_in: str | None = None
    check: bool = False
    strict: bool = False


@dataclass(frozen=True)
class RenderSettings:
    """``unitctl render``: the flags given (render merges them over ``[render]`` itself) and where the unit goes."""

    flags: RenderFlags
    output: str | None = None


@dataclass(frozen=True)
class FetchSettings:
    """``unitctl fetch``: the checkout and the remote to fetch."""

    repo: str
    remote: str = "origin"
