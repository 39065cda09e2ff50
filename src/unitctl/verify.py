"""Check a candidate unit: ``systemd-analyze verify`` plus unitctl's own Gunicorn checks.

``systemd-analyze verify`` runs an offline test manager (no PID 1 needed) that loads the file
the way systemd would: unknown directives, bad values, missing dependencies, ExecStart binaries
that do not exist or are not executable. unitctl's own checks add what only a Gunicorn-aware
reader sees (see ``_own_checks``). Findings are data; ``verify_unit`` never raises on them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unitctl import masking
from unitctl.errors import InputError, UsageError, VerificationError
from unitctl.unitname import has_command_type

# systemd-analyze lines that report a setting it skipped: the unit still loads.
_IGNORED = re.compile(r"ignoring|Unknown (key|section|lvalue)|is deprecated|Ignoring", re.IGNORECASE)


@dataclass(frozen=True)
class VerifyReport:
    """What verification found: errors stop a deploy, warnings are advice."""

    path: Path
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class _Findings:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# What only the server can answer: the programs, users and directories a unit names. --offline leaves it out.
_HOST_ONLY = re.compile(r"Command \S+ is not executable: No such file or directory")


def verify_unit(path: Path, *, name: str | None = None, offline: bool = False) -> VerifyReport:
    """Verify the unit file at ``path`` (loaded as ``name``, default its file name); never raise on findings.

    ``offline``: the unit is checked away from the server it is for (in CI): programs, users and directories that
    only exist there are not looked for; everything systemd would refuse in the file itself still is.
    """
    from unitctl.unitname import validate_unit_name

    path = Path(path)
    text = _read(path)
    try:
        unit_name = validate_unit_name(name or path.name)
    except UsageError:
        if name:
            raise
        raise UsageError(
            f"{path}: the file name {path.name!r} is not a unit name, so systemd cannot tell its type",
            hint="pass --name, e.g. --name myapp.service",
        ) from None
    found = _Findings()
    _run_analyze(path, unit_name, found, offline=offline)
    _own_checks(text, found, offline=offline)
    # systemd-analyze and Gunicorn's parser quote the lines they reject: secrets of the unit included.
    env = _unit_values(text)
    return VerifyReport(
        path=path,
        errors=tuple(masking.mask(e, env) for e in found.errors),
        warnings=tuple(masking.mask(w, env) for w in found.warnings),
    )


def _unit_values(text: str) -> dict[str, str]:
    """Return the values the unit file itself gives its service: Environment= and SetCredential= (by name)."""
    from unitctl.errors import UnitctlError
    from unitctl.gunicorn import unit_environment
    from unitctl.unitfile import UnitFile

    try:
        unit = UnitFile.parse(text)
        variables, _ = unit_environment(unit)
    except UnitctlError:
        return {}
    values = {name: value for name, (value, _, _) in variables.items()}
    for item in unit.values("Service", "SetCredential"):
        ident, sep, data = item.partition(":")
        if sep:
            values[f"$CREDENTIALS_DIRECTORY/{ident}"] = data
    return values


def check(path: Path, *, name: str | None = None) -> VerifyReport:
    """Verify ``path`` and raise VerificationError naming the first error when there is one."""
    report = verify_unit(path, name=name)
    if report.errors:
        more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
        raise VerificationError(f"{path}: {report.errors[0]}{more}", hint="fix the unit and verify again")
    return report


def _read(path: Path) -> str:
    from unitctl.fsutil import read_unit_bytes

    try:
        return read_unit_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text", hint="a unit file must be UTF-8") from exc


def _analyze_binary() -> str:
    found = shutil.which("systemd-analyze")
    if not found:
        raise VerificationError(
            "systemd-analyze is not installed, so the unit cannot be verified",
            hint="install it (Debian: apt-get install systemd)",
        )
    return found


def _run_analyze(path: Path, unit_name: str, found: _Findings, *, offline: bool = False) -> None:
    binary = _analyze_binary()
    with tempfile.TemporaryDirectory(prefix="unitctl-verify-") as tmp:
        # systemd derives the unit's name and type from the file name, and adds the file's
        # directory to the unit search path: load a copy named as the unit, with its sibling
        # units (a .socket the service requires) beside it.
        target = Path(tmp) / unit_name
        shutil.copyfile(path, target)
        base = unit_name.rsplit(".", 1)[0]
        for sibling in path.resolve().parent.glob(f"{glob_escape(base)}.*"):
            if sibling.name != unit_name and sibling.is_file() and has_command_type(sibling.name):
                shutil.copyfile(sibling, Path(tmp) / sibling.name)
        try:
            proc = subprocess.run(
                [binary, "verify", "--man=no", str(target)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
            )
        except subprocess.TimeoutExpired as exc:
            raise VerificationError("systemd-analyze verify did not finish in 60s", hint="try again") from exc
        except OSError as exc:
            raise VerificationError(
                f"cannot run {binary}: {exc.strerror}", hint="check the systemd installation"
            ) from exc
        lines = [_clean(line, tmp, str(path)) for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    host_only = [line for line in lines if offline and _HOST_ONLY.search(line)]
    lines = [line for line in lines if line not in host_only]
    errors = [line for line in lines if not _IGNORED.search(line)] if proc.returncode != 0 else []
    found.warnings.extend(line for line in lines if line not in errors)
    found.errors.extend(errors)
    if proc.returncode != 0 and not errors and not host_only:
        found.errors.append(f"systemd-analyze verify failed (exit {proc.returncode})")


def glob_escape(text: str) -> str:
    """Escape glob metacharacters in a unit base name."""
    return re.sub(r"([*?\[\]])", r"[\1]", text)


def _clean(line: str, tmp: str, original: str) -> str:
    """Point systemd-analyze's messages at the user's file instead of our temporary copy."""
    line = re.sub(re.escape(tmp) + r"/[^\s:]+", original, line)
    return line.strip()


def _own_checks(text: str, found: _Findings, *, offline: bool = False) -> None:
    """Add unitctl's own findings; docs/reference.md ('unitctl verify') explains each."""
    from unitctl.errors import UnitctlError
    from unitctl.placeholders import find_placeholder
    from unitctl.unitfile import UnitFile

    leftover = find_placeholder(text)
    if leftover:
        found.errors.append(
            f"the unit still contains a template placeholder {leftover.token!r} (line {leftover.line}): render it first"
        )
    try:
        unit = UnitFile.parse(text)
    except UnitctlError:
        return  # systemd-analyze has already said why the file does not load
    service_type = unit.get("Service", "Type") or "simple"
    kill_mode = unit.get("Service", "KillMode")
    if kill_mode in ("process", "none"):
        found.warnings.append(
            f"KillMode={kill_mode}: on stop/restart systemd signals only the Gunicorn master, so workers "
            "of a master that hangs or crashes outlive the service and keep the port; use KillMode=mixed"
        )
    if service_type == "notify" and unit.get("Service", "NotifyAccess") == "none":
        found.errors.append(
            "Type=notify with NotifyAccess=none: systemd ignores Gunicorn's READY=1 and the start times out; "
            "use NotifyAccess=main"
        )
    if not offline:
        _host_checks(unit, found)
    _secret_environment(unit, found)
    try:
        invocation = _gunicorn_in(unit)
    except UnitctlError as exc:
        found.errors.append(f"Gunicorn would refuse its command line: {exc}")
        return
    if invocation is not None:
        _gunicorn_checks(unit, invocation.args.values, service_type, found)


def _secret_environment(unit: Any, found: _Findings) -> None:
    """Warn about Environment= variables with secret names: 'systemctl show' shows them to any local user."""
    from unitctl.execline import ExecSyntaxError, environment_assignments
    from unitctl.masking import is_secret_name

    for value in unit.values("Service", "Environment"):
        try:
            assignments = environment_assignments(value)
        except ExecSyntaxError:
            continue  # systemd ignores the line
        for name, _, _ in assignments:
            if is_secret_name(name):
                found.warnings.append(
                    f"Environment={name}=... looks like a secret: any local user can read it with "
                    "'systemctl show'; move it to an EnvironmentFile= readable only by root (mode 0600)"
                )


def _gunicorn_checks(unit: Any, values: Mapping[str, object], service_type: str, found: _Findings) -> None:
    """Add the findings about how Gunicorn's options fit the unit (preload, reload, daemon, Type=, chdir)."""
    if values.get("preload_app"):
        found.warnings.append(
            "Gunicorn runs with --preload: the app is imported once in the master, so 'systemctl reload' "
            "(HUP) restarts workers with the OLD code; deploys need a restart (or drop --preload)"
        )
    if values.get("reload"):
        found.warnings.append(
            "Gunicorn runs with --reload, a development code reloader: workers restart on every file change"
        )
    daemon = bool(values.get("daemon"))
    if daemon and service_type != "forking":
        found.errors.append(
            f"Gunicorn runs with --daemon under Type={service_type}: the main process exits at once and "
            "systemd stops the service; drop --daemon (use Type=notify)"
        )
    elif service_type == "forking" and not daemon:
        found.errors.append(
            "Type=forking but Gunicorn stays in the foreground (no --daemon): the start hangs until it times "
            "out; use Type=notify"
        )
    elif service_type in ("simple", "exec", "idle"):
        found.warnings.append(
            f"Type={service_type}: systemd reports the service started before Gunicorn has bound its "
            "sockets; use Type=notify (Gunicorn >= 20 sends READY=1)"
        )
    if not unit.values("Service", "ExecReload"):
        found.warnings.append(
            "no ExecReload=: 'systemctl reload' fails; add ExecReload=/bin/kill -s HUP $MAINPID "
            "(Gunicorn replaces its workers gracefully on HUP)"
        )
    if not unit.get("Service", "WorkingDirectory") and not values.get("chdir") and not values.get("pythonpath"):
        found.warnings.append(
            "no WorkingDirectory= (nor --chdir): Gunicorn imports the app relative to /, which works only "
            "when the app is installed in the environment; set WorkingDirectory= to the project directory"
        )


def _host_checks(unit: Any, found: _Findings) -> None:
    """Warn about what would make the start fail on this host (verify may run elsewhere, so not errors)."""
    import grp
    import pwd

    dynamic = (unit.get("Service", "DynamicUser") or "").lower() in ("yes", "true", "1", "on")
    for key, lookup, status in (("User", pwd.getpwnam, "217/USER"), ("Group", grp.getgrnam, "216/GROUP")):
        value = unit.get("Service", key)
        if not value or dynamic or "%" in value or value.isdigit():
            continue
        try:
            lookup(value)
        except KeyError:
            found.warnings.append(
                f"{key}={value} does not exist on this host: here the service would fail to start ({status}); "
                f"create it (e.g. useradd --system {value}) before installing the unit"
            )
    workdir = unit.get("Service", "WorkingDirectory") or ""
    if workdir.startswith("/") and "%" not in workdir and not Path(workdir).is_dir():
        found.warnings.append(
            f"WorkingDirectory={workdir} does not exist on this host: here the service would fail to start "
            "(200/CHDIR); deploy the code first, or prefix the path with '-' if it is optional"
        )


def _gunicorn_in(unit: Any) -> Any:
    """Return the Gunicorn invocation of the unit's effective ExecStart=, or None when it runs something else."""
    from unitctl.errors import NotGunicornError
    from unitctl.execline import ExecSyntaxError
    from unitctl.gunicorn import find_gunicorn

    try:
        return find_gunicorn(unit).invocation
    except ExecSyntaxError:
        return None  # systemd-analyze reports the bad command line
    except NotGunicornError:
        return None


__all__: Sequence[str] = ("VerifyReport", "check", "verify_unit")
