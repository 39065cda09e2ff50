"""Pre-import check: does the new code load in exactly the environment the service will run in?

The check runs as a transient systemd unit with the candidate unit's own User=, Group=,
WorkingDirectory=, Environment= and EnvironmentFile= (drop-ins of the installed unit merged), so it
sees what the service will see. Two forms:

- default: ``<gunicorn> <the unit's gunicorn arguments> --check-config`` — Gunicorn's own loader
  imports the app and exits 1 when it cannot (the most faithful check: same app spec, same -c file);
- ``--pre-import MODULE:VAR``: ``<the service's python> -c 'import importlib; getattr(importlib.import_module(M), V)'``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from unitctl.errors import NotGunicornError, UnitSyntaxError, UsageError
from unitctl.systemd.base import TransientSpec

PRE_IMPORT_TIMEOUT = 120.0
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_PRELOAD_FLAGS = ("--preload", "--prel", "--prelo", "--preloa", "--pre")


def parse_target(spec: str) -> tuple[str, str]:
    """Split MODULE:VAR (``app.wsgi:application``); raise UsageError if malformed."""
    module, sep, var = spec.partition(":")
    if not sep or not _IDENT.match(module) or not _IDENT.match(var) or "." in var:
        raise UsageError(
            f"--pre-import {spec!r} is not MODULE:VAR",
            hint="pass the WSGI app as Gunicorn names it, e.g. --pre-import myapp.wsgi:application",
        )
    return module, var


@dataclass(frozen=True)
class ServiceView:
    """What the service will run with, as systemd reads the candidate unit (plus installed drop-ins)."""

    exec_argv: tuple[str, ...]
    gunicorn_argv: tuple[str, ...]  # the Gunicorn part of ExecStart (executable first)
    user: str | None = None
    group: str | None = None
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    env_files: tuple[tuple[str, bool], ...] = ()
    preload: bool = False


def _dropins(unit: str, unit_dir: Path) -> list[str]:
    d = unit_dir / f"{unit}.d"
    try:
        paths = sorted(p for p in d.iterdir() if p.name.endswith(".conf") and p.is_file())
    except OSError:
        return []
    return [p.read_text(encoding="utf-8", errors="replace") for p in paths]


def service_view(text: str, *, unit: str, unit_dir: Path) -> ServiceView:
    """Read the candidate unit's [Service] settings that matter for importing the app."""
    from unitctl.unitfile import UnitFile, merged

    view = merged(UnitFile.parse(text, path=unit), [UnitFile.parse(t) for t in _dropins(unit, unit_dir)])

    def last(key: str) -> str | None:
        # An empty assignment resets a single-value key to its default.
        return view.get("Service", key) or None

    def values(key: str) -> list[str]:
        return view.values("Service", key)

    exec_values = values("ExecStart")
    if not exec_values:
        raise NotGunicornError(f"{unit} has no ExecStart=", hint="the service must run Gunicorn")
    argv = _exec_argv(exec_values[-1], unit)
    gargv = _gunicorn_argv(argv, unit)
    env = _parse_environment(values("Environment"), unit)
    env_files = tuple((v[1:], True) if v.startswith("-") else (v, False) for v in values("EnvironmentFile"))
    preload = _has_preload(gargv[1:]) or _has_preload(shlex.split(env.get("GUNICORN_CMD_ARGS", "")))
    return ServiceView(
        exec_argv=tuple(argv),
        gunicorn_argv=tuple(gargv),
        user=last("User"),
        group=last("Group"),
        cwd=last("WorkingDirectory"),
        env=env,
        env_files=env_files,
        preload=preload,
    )


def _exec_argv(value: str, unit: str) -> list[str]:
    from unitctl import execline

    commands = execline.split(value)
    if len(commands) != 1:
        raise NotGunicornError(f"{unit}: ExecStart= must hold one command, found {len(commands)}")
    return list(commands[0].argv)


def _gunicorn_argv(argv: Sequence[str], unit: str) -> list[str]:
    """Return the Gunicorn command inside ``argv`` (executable first), or raise NotGunicornError."""
    try:
        from unitctl import gunicorn  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # TEMPORARY until gunicorn.py lands: same rule, executable or python -m
        inv = _find_simple(argv)
    else:
        inv = gunicorn.find_invocation(list(argv))
    if inv is None:
        raise NotGunicornError(
            f"{unit}: ExecStart= does not run Gunicorn ({' '.join(argv)[:120]})",
            hint="unitctl deploys Gunicorn services; use --no-pre-import to skip the import check",
        )
    return list(gunicorn_command(inv, argv))


@dataclass(frozen=True)
class _Found:
    start: int
    end: int | None = None


def _find_simple(argv: Sequence[str]) -> _Found | None:
    if argv and Path(argv[0]).name == "gunicorn":
        return _Found(0)
    if len(argv) > 2 and Path(argv[0]).name.startswith("python") and argv[1:3] == ["-m", "gunicorn"]:
        return _Found(0)
    return None


def gunicorn_command(inv: object, argv: Sequence[str]) -> Sequence[str]:
    """Return the executable + arguments of a found Gunicorn invocation."""
    start = getattr(inv, "start", None)
    if isinstance(start, int):
        end = getattr(inv, "end", None)
        return list(argv[start : end if isinstance(end, int) else None])
    command = getattr(inv, "argv", None)
    if command is not None:
        return list(command)
    raise NotGunicornError("cannot locate the Gunicorn command line in ExecStart=")


def _has_preload(args: Sequence[str]) -> bool:
    for arg in args:
        if arg == "--":
            return False
        if arg in _PRELOAD_FLAGS:
            return True
    return False


def _parse_environment(values: Sequence[str], unit: str) -> dict[str, str]:
    """Parse Environment= values (quoted KEY=VALUE words) the way systemd does, later keys winning."""
    env: dict[str, str] = {}
    for value in values:
        try:
            words = shlex.split(value, posix=True)
        except ValueError as exc:
            raise UnitSyntaxError(f"{unit}: Environment={value!r} is not valid: {exc}") from exc
        for word in words:
            key, sep, val = word.partition("=")
            if sep and key:
                env[key] = val
    return env


def service_python(gargv: Sequence[str]) -> str:
    """Return the interpreter that runs the service's Gunicorn (python -m gunicorn, or the script's shebang)."""
    exe = gargv[0]
    name = Path(exe).name
    if name.startswith("python"):
        return exe
    try:
        with open(exe, "rb") as fh:
            first = fh.readline(512)
    except OSError:
        first = b""
    if first.startswith(b"#!"):
        words = first[2:].decode("utf-8", "replace").split()
        if words and Path(words[0]).name.startswith("python"):
            return words[0]
    sibling = Path(exe).parent / "python3"
    return str(sibling) if "/" in exe else "python3"


def check_spec(text: str, *, unit: str, unit_dir: Path, pre_import: str | None) -> TransientSpec:
    """Return the transient command that checks the candidate's app imports in the service's environment."""
    view = service_view(text, unit=unit, unit_dir=unit_dir)
    if pre_import:
        module, var = parse_target(pre_import)
        code = f"import importlib; getattr(importlib.import_module({module!r}), {var!r})"
        argv: list[str] = [service_python(view.gunicorn_argv), "-c", code]
    else:
        argv = [*view.gunicorn_argv, "--check-config"]
    return TransientSpec(
        argv=argv,
        user=view.user,
        group=view.group,
        cwd=view.cwd,
        env=view.env,
        env_files=view.env_files,
        timeout=PRE_IMPORT_TIMEOUT,
    )
