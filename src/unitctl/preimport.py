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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from unitctl import masking
from unitctl.errors import InputError, NotGunicornError, UsageError
from unitctl.systemd.base import TransientSpec

if TYPE_CHECKING:
    from unitctl.gunicorn import Invocation
    from unitctl.unitfile import MergedUnit, UnitFile

PRE_IMPORT_TIMEOUT = 120.0
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def parse_app_spec(spec: str) -> tuple[str, str]:
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

    gunicorn_argv: tuple[str, ...]  # the Gunicorn command with --check-config added
    user: str | None = None
    group: str | None = None
    cwd: str | None = None
    # Every value the unit hands the service, by name: Environment=, the EnvironmentFile= contents (read as
    # systemd does), Gunicorn's -e NAME=VALUE, and credentials as "$CREDENTIALS_DIRECTORY/ID". What masking hides.
    env: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)  # Environment= only: systemd reads the files itself
    env_files: tuple[tuple[str, bool], ...] = ()
    preload: bool = False
    reloadable: bool = True  # it has an ExecReload= ('systemctl reload' fails without one)
    python: str = "python3"  # the interpreter the service's Gunicorn runs on
    expand_variables: bool = True  # systemd expands $VAR in the command (False with the ':' prefix)
    invocation: Invocation | None = None  # the service's Gunicorn command as the unit runs it (the canary's base)


def _dropins(unit: str, unit_dir: Path, *, root: Path = Path("/")) -> list[UnitFile]:
    """Read the drop-ins systemd applies to the installed unit, in its order; each parsed under its own path.

    The search is systemd's (``NAME.service.d``, ``prefix-.service.d``, ``service.d`` across the load path);
    a ``unit_dir`` outside the load path comes first.
    """
    from unitctl.unitfile import SYSTEM_UNIT_PATH, UnitFile, dropin_paths

    search = list(SYSTEM_UNIT_PATH)
    if str(unit_dir) not in search:
        search.insert(0, str(unit_dir))
    out: list[UnitFile] = []
    for path in dropin_paths(unit, search, root=root):
        real = root / path.lstrip("/")
        try:
            text = real.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise InputError(f"cannot read drop-in {path}: {exc.strerror}", hint="check its permissions") from exc
        out.append(UnitFile.parse(text, path=path))
    return out


def service_view(text: str, *, unit: str, unit_dir: Path) -> ServiceView:
    """Read the candidate unit's [Service] settings that matter for importing the app."""
    from unitctl import gunicorn
    from unitctl.unitfile import UnitFile, merged

    main = UnitFile.parse(text, path=unit)
    dropins = _dropins(unit, unit_dir)
    view = merged(main, dropins)
    _remember_installed(text, unit=unit, unit_dir=unit_dir, dropins=dropins)

    def last(key: str) -> str | None:
        # An empty assignment resets a single-value key to its default.
        return view.get("Service", key) or None

    def values(key: str) -> list[str]:
        return view.values("Service", key)

    if not values("ExecStart"):
        raise NotGunicornError(f"{unit} has no ExecStart=", hint="the service must run Gunicorn")
    # The same reading as the rewriter: resets applied, the '@' argv0 prefix, one Gunicorn command.
    found = gunicorn.find_gunicorn(view)
    inv = found.invocation
    # Settings from the merged view: a drop-in may set GUNICORN_CMD_ARGS or WorkingDirectory= (gunicorn.conf.py).
    settings = gunicorn.effective_settings(view, read_file=gunicorn.default_read_file, invocation=(found.entry, inv))
    # A preload setting computed by a config file is unknown: assume preload (a restart is always right).
    preload = settings.preload.value is None or bool(settings.preload.value)
    variables, files = gunicorn.unit_environment(view)
    environment = {name: value for name, (value, _, _) in variables.items()}
    env_files = tuple((f[1:], True) if f.startswith("-") else (f, False) for f in files)
    env = _service_env(view, settings.environment, inv)
    masking.remember(env)
    return ServiceView(
        gunicorn_argv=tuple(check_config_argv(inv)),
        user=last("User"),
        group=last("Group"),
        cwd=last("WorkingDirectory"),
        env=env,
        environment=environment,
        env_files=env_files,
        preload=preload,
        reloadable=bool(values("ExecReload")),
        python=_python_of(inv),
        expand_variables=not found.command.no_env_expand,
        invocation=inv,
    )


def _service_env(view: MergedUnit, environment: Mapping[str, str], inv: Invocation) -> dict[str, str]:
    """Return every value the unit hands the service (see ServiceView.env)."""
    return {**environment, **_gunicorn_env(inv), **_credentials(view)}


def _remember_installed(text: str, *, unit: str, unit_dir: Path, dropins: list[UnitFile]) -> None:
    """Learn the installed unit's values too: its release's journal is shown when a deploy rolls back to it."""
    from unitctl import gunicorn
    from unitctl.errors import UnitctlError
    from unitctl.unitfile import UnitFile, merged

    try:
        installed = (unit_dir / unit).read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return
    if installed == text:
        return
    try:
        view = merged(UnitFile.parse(installed, path=unit), dropins)
        found = gunicorn.find_gunicorn(view)
        settings = gunicorn.effective_settings(
            view, read_file=gunicorn.default_read_file, invocation=(found.entry, found.invocation)
        )
    except UnitctlError:
        return  # not (or no longer) a Gunicorn unit: nothing of it runs during this deploy's rollback guard
    masking.remember(_service_env(view, settings.environment, found.invocation))


def _gunicorn_env(inv: Invocation) -> dict[str, str]:
    """Return the variables Gunicorn's ``-e NAME=VALUE`` / ``--env`` arguments give the workers."""
    out: dict[str, str] = {}
    raw = inv.args.values.get("raw_env") or []
    for item in raw if isinstance(raw, list | tuple) else [raw]:
        name, sep, value = str(item).partition("=")
        if sep:
            out[name] = value
    return out


CREDENTIAL_LIMIT = 64 << 10  # bytes of a LoadCredential= file read to learn its value


def _credentials(view: MergedUnit) -> dict[str, str]:
    """Return the unit's credentials by ``$CREDENTIALS_DIRECTORY/ID``: SetCredential= values, LoadCredential= files.

    Only absolute paths to regular files are read (capped); a directory, socket or search-path ID is left alone.
    """
    from unitctl.fsutil import read_capped

    out: dict[str, str] = {}
    for value in view.values("Service", "SetCredential"):
        ident, sep, data = value.partition(":")
        if sep:
            out[f"$CREDENTIALS_DIRECTORY/{ident}"] = data
    for value in view.values("Service", "LoadCredential"):
        ident, sep, path = value.partition(":")
        if sep and path.startswith("/"):
            content = read_capped(path, CREDENTIAL_LIMIT)
            if content is not None:
                out[f"$CREDENTIALS_DIRECTORY/{ident}"] = content.decode("utf-8", "replace").strip()
    return out


def check_config_argv(inv: Invocation) -> list[str]:
    """Return the command with ``--check-config`` added right after the Gunicorn executable.

    For ``sh -c '... gunicorn ...'`` the script's words are run directly (no shell): the check
    then loads the same app with the same options, without the script's other commands.
    """
    words = list(inv.argv)
    return [*words[: inv.exe_index + 1], "--check-config", *words[inv.exe_index + 1 :]]


def _python_of(inv: Invocation) -> str:
    words = list(inv.argv)
    if inv.launcher.startswith("python"):
        return words[0]
    return service_python(words[inv.exe_index])


def service_python(exe: str) -> str:
    """Return the interpreter behind the Gunicorn script ``exe`` (its shebang, else python3 beside it)."""
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
        module, var = parse_app_spec(pre_import)
        code = f"import importlib; getattr(importlib.import_module({module!r}), {var!r})"
        argv: list[str] = [view.python, "-c", code]
        expand = False  # our own code, passed literally
    else:
        # The unit's own words: ${APP_MODULE} or --bind 127.0.0.1:${PORT} mean what they mean for the service.
        argv = list(view.gunicorn_argv)
        expand = view.expand_variables
    return as_service(view, argv, timeout=PRE_IMPORT_TIMEOUT, expand_variables=expand)


def as_service(
    view: ServiceView, argv: Sequence[str], *, timeout: float, expand_variables: bool = False
) -> TransientSpec:
    """Return a transient command with the service's identity: User, Group, WorkingDirectory, Environment(File).

    The one home of that identity: the import check, the canary and the hooks (deploy/hooks.py) all start here.
    """
    return TransientSpec(
        argv=list(argv),
        user=view.user,
        group=view.group,
        cwd=view.cwd,
        env=view.environment,
        env_files=view.env_files,
        timeout=timeout,
        expand_variables=expand_variables,
    )
