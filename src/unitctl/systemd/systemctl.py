"""SystemdBackend over the command-line tools: systemctl, systemd-run and journalctl (argv, never a shell)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence

from unitctl.errors import SystemdError
from unitctl.systemd.base import (
    JobFailedError,
    TransientResult,
    TransientSpec,
    UnitState,
    check_transient_prefix,
    failure_detail,
    mount_path,
    transient_args,
    transient_name,
    transient_outcome,
)
from unitctl.systemd.cgroup import cgroup_pids
from unitctl.unitname import validate_unit_name

STATE_PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "MainPID",
    "NRestarts",
    "Result",
    "ExecMainStatus",
    "InvocationID",
    "NeedDaemonReload",
    "FragmentPath",
    "DropInPaths",
    "UnitFileState",
)
_ENV = {"SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "LC_ALL": "C.UTF-8"}


def parse_show(output: str) -> dict[str, str]:
    """Parse ``systemctl show`` KEY=VALUE lines (values may contain '=')."""
    result: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            result[key] = value
    return result


def state_from_properties(unit: str, props: dict[str, str]) -> UnitState:
    """Build a UnitState from ``systemctl show`` properties."""

    def num(key: str) -> int:
        try:
            return int(props.get(key, "") or 0)
        except ValueError:
            return 0  # "[not set]" and friends

    return UnitState(
        name=unit,
        load_state=props.get("LoadState", ""),
        active_state=props.get("ActiveState", ""),
        sub_state=props.get("SubState", ""),
        main_pid=num("MainPID"),
        n_restarts=num("NRestarts"),
        result=props.get("Result", "") or "success",
        exec_main_status=num("ExecMainStatus"),
        invocation_id=props.get("InvocationID", ""),
        need_daemon_reload=props.get("NeedDaemonReload", "no") == "yes",
        fragment_path=props.get("FragmentPath", ""),
        dropin_paths=tuple(props.get("DropInPaths", "").split()),
        unit_file_state=props.get("UnitFileState", ""),
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "no message"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemdError(f"{name} is not installed or not on PATH", hint="install systemd")
    return path


class SystemctlBackend:
    """Talk to systemd by running systemctl / systemd-run / journalctl."""

    name = "systemctl"
    local = True

    def __init__(self, *, job_timeout: float = 300.0) -> None:
        self.job_timeout = job_timeout
        self._systemctl = _tool("systemctl")

    def _run(self, argv: Sequence[str], *, what: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                errors="replace",
                stdin=subprocess.DEVNULL,
                timeout=timeout or self.job_timeout,
                env={**os.environ, **_ENV},
                check=True,
            )
        except subprocess.CalledProcessError as exc:
            raise SystemdError(f"{what} failed: {_first_line(exc.stderr or exc.stdout or '')}") from exc
        except subprocess.TimeoutExpired as exc:
            raise SystemdError(
                f"{what} did not finish within {timeout or self.job_timeout:g}s",
                hint="check 'systemctl list-jobs'",
            ) from exc
        except OSError as exc:
            raise SystemdError(f"{what} failed: cannot run {argv[0]}: {exc.strerror}") from exc

    def _job(self, verb: str, unit: str) -> None:
        unit = validate_unit_name(unit)
        try:
            self._run([self._systemctl, verb, unit], what=f"{verb} of {unit}")
        except SystemdError as exc:
            state = self._state_or_none(unit)
            detail = failure_detail(state)
            message = exc.message + (f" ({detail})" if detail else "")
            raise JobFailedError(
                message,
                unit=unit,
                operation=verb,
                state=state,
                hint=f"see 'journalctl -u {unit}'",
            ) from exc

    def _state_or_none(self, unit: str) -> UnitState | None:
        try:
            return self.state(unit)
        except SystemdError:
            return None

    def daemon_reload(self) -> None:
        self._run([self._systemctl, "daemon-reload"], what="daemon-reload")

    def start(self, unit: str) -> None:
        self._job("start", unit)

    def stop(self, unit: str) -> None:
        self._job("stop", unit)

    def restart(self, unit: str) -> None:
        self._job("restart", unit)

    def reload(self, unit: str) -> None:
        self._job("reload", unit)

    def reset_failed(self, unit: str) -> None:
        unit = validate_unit_name(unit)
        self._run([self._systemctl, "reset-failed", unit], what=f"reset-failed of {unit}", timeout=60)

    def enable(self, unit: str) -> None:
        unit = validate_unit_name(unit)
        self._run([self._systemctl, "enable", unit], what=f"enable of {unit}", timeout=60)

    def disable(self, unit: str) -> None:
        unit = validate_unit_name(unit)
        self._run([self._systemctl, "disable", unit], what=f"disable of {unit}", timeout=60)

    def state(self, unit: str) -> UnitState:
        unit = validate_unit_name(unit)
        proc = self._run(
            [self._systemctl, "show", unit, f"--property={','.join(STATE_PROPERTIES)}"],
            what=f"reading the state of {unit}",
            timeout=60,
        )
        return state_from_properties(unit, parse_show(proc.stdout))

    def run_transient(self, spec: TransientSpec) -> TransientResult:
        name = transient_unit_name(spec.name_prefix)
        argv = transient_argv(spec, _tool("systemd-run"), unit=name)
        what = f"running {spec.argv[0]!r} as transient unit {name}"
        try:
            proc = subprocess.run(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # --pipe hands our fds to the service: one stream, in order
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
                timeout=spec.timeout + 30,
                env={**os.environ, **_ENV},
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            self._discard(name)
            raise SystemdError(f"{what} did not finish within {spec.timeout:g}s") from exc
        except OSError as exc:
            raise SystemdError(f"{what} failed: cannot run systemd-run: {exc.strerror}") from exc
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): the unit would run on without us; a hook must not outlive its deploy.
            self._discard(name)
            raise
        if proc.returncode == 0:
            return TransientResult(returncode=0, output=proc.stdout)
        # systemd-run's exit status mixes the command's with its own failures: ask systemd what happened.
        # Without --collect a unit that ended badly stays loaded (failed) until reset-failed.
        props = parse_show(
            self._run(
                [self._systemctl, "show", name, "--property=LoadState,Result,ExecMainCode,ExecMainStatus"],
                what=f"reading the state of {name}",
                timeout=60,
            ).stdout
        )
        self._discard(name)
        if props.get("LoadState") != "loaded":
            raise SystemdError(f"{what} failed: {_last_line(proc.stdout)}")
        return transient_outcome(
            what,
            result=props.get("Result", ""),
            exec_main_code=int(props.get("ExecMainCode") or 0),
            exec_main_status=int(props.get("ExecMainStatus") or 0),
            output=proc.stdout,
        )

    def start_transient(self, spec: TransientSpec) -> str:
        name = transient_name(spec)
        self._discard(name)  # a failed unit of an earlier run keeps its name taken until reset
        argv = transient_argv(spec, _tool("systemd-run"), unit=name, wait=False)
        self._run(argv, what=f"starting {spec.argv[0]!r} as transient unit {name}", timeout=120)
        return name

    def _discard(self, name: str) -> None:
        # Best effort: the unit may already be gone (collected), which is what we want anyway.
        for verb in ("stop", "reset-failed"):
            subprocess.run(
                [self._systemctl, verb, name], capture_output=True, timeout=60, check=False, env={**os.environ, **_ENV}
            )

    def journal(self, unit: str, *, invocation_id: str | None = None, lines: int = 50) -> list[str]:
        return journal_lines(unit, invocation_id=invocation_id, lines=lines)

    def unit_pids(self, unit: str) -> set[int] | None:
        unit = validate_unit_name(unit)
        try:
            out = self._run(
                [self._systemctl, "show", unit, "--property=ControlGroup"],
                what=f"reading the cgroup of {unit}",
                timeout=60,
            ).stdout
        except SystemdError:
            return None
        return cgroup_pids(parse_show(out).get("ControlGroup", ""))

    def remove_transient_units(self, prefix: str) -> list[str]:
        pattern = check_transient_prefix(prefix) + "*.service"
        out = self._run(
            [self._systemctl, "list-units", "--all", "--plain", "--no-legend", "--full", pattern],
            what=f"listing {pattern}",
            timeout=60,
        ).stdout
        names = [line.split()[0] for line in out.splitlines() if line.split()]
        names = [n for n in names if n.startswith(prefix)]
        for name in names:
            self._discard(name)
        return names


def resolve_executable(argv0: str) -> str:
    """Return the absolute path of ``argv0`` (searched in PATH) or raise SystemdError."""
    if not argv0:
        raise SystemdError("run_transient needs a command; got an empty argv")
    path = argv0 if "/" in argv0 else shutil.which(argv0)
    if path is None or not os.path.isabs(path) or not os.access(path, os.X_OK) or os.path.isdir(path):
        raise SystemdError(
            f"cannot run {argv0!r} as a transient unit: no such executable",
            hint="give an absolute path to an executable file",
        )
    return path


def transient_unit_name(prefix: str = "unitctl-run-") -> str:
    """Return a fresh name for a transient check unit, starting with ``prefix``."""
    return f"{check_transient_prefix(prefix)}{uuid.uuid4().hex[:16]}.service"


def transient_argv(
    spec: TransientSpec, systemd_run: str = "systemd-run", *, unit: str | None = None, wait: bool = True
) -> list[str]:
    """Build the systemd-run command line for ``spec`` (the command runs with the service's identity).

    ``wait``: run to the end with its output piped back; otherwise start it and return (its output goes to the journal).
    """
    if not spec.argv:
        raise SystemdError("run_transient needs a command; got an empty argv")
    exe = resolve_executable(spec.argv[0])
    argv = [systemd_run, *(["--wait", "--pipe"] if wait else []), "--quiet", "--service-type=exec"]
    if unit:
        argv.append(f"--unit={unit}")
    argv.append(f"--property=RuntimeMaxSec={max(1, int(spec.timeout))}")
    if spec.user:
        argv.append(f"--property=User={spec.user}")
    if spec.group:
        argv.append(f"--property=Group={spec.group}")
    if spec.cwd:
        argv.append(f"--property=WorkingDirectory={spec.cwd}")
    for path, ignore_missing in spec.env_files:
        argv.append(f"--property=EnvironmentFile={'-' if ignore_missing else ''}{path}")
    for key, value in spec.env.items():
        if not key or "=" in key or "\n" in value:
            raise SystemdError(f"environment variable {key!r} cannot be passed to systemd-run")
        argv.append(f"--setenv={key}={value}")
    for path in spec.temporary_fs:
        argv.append(f"--property=TemporaryFileSystem={mount_path(path)}:ro")
    for source, dest in spec.binds:
        argv.append(f"--property=BindPaths={mount_path(source)}:{mount_path(dest)}")
    for source, dest in spec.ro_binds:
        argv.append(f"--property=BindReadOnlyPaths={mount_path(source)}:{mount_path(dest)}")
    if spec.runtime_directory:
        argv.append(f"--property=RuntimeDirectory={spec.runtime_directory}")
    return [*argv, "--", exe, *transient_args(spec)]


def journal_lines(unit: str, *, invocation_id: str | None = None, lines: int = 50) -> list[str]:
    """Return the last ``lines`` journal messages of ``unit`` (one invocation's only, if given)."""
    unit = validate_unit_name(unit)
    if lines <= 0:
        return []
    argv = [_tool("journalctl"), "--no-pager", "-q", "-o", "cat", "-n", str(lines), "-u", unit]
    if invocation_id:
        if not all(c in "0123456789abcdef" for c in invocation_id) or len(invocation_id) != 32:
            raise SystemdError(f"invalid invocation id {invocation_id!r} for {unit}'s journal")
        argv.append(f"_SYSTEMD_INVOCATION_ID={invocation_id}")
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
            timeout=60,
            env={**os.environ, **_ENV},
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        raise SystemdError(f"reading the journal of {unit} failed: {_first_line(exc.stderr)}") from exc
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise SystemdError(f"reading the journal of {unit} failed: {exc}") from exc
    return proc.stdout.splitlines()
