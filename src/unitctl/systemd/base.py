"""The one seam between unitctl and systemd: a protocol and the data it returns.

Real implementations: ``systemctl.py`` (subprocess, always available) and ``dbus.py`` (pystemd).
``fake.py`` is an in-memory stand-in for fast unit tests of the guard's decisions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from unitctl.errors import SystemdError
from unitctl.unitname import validate_unit_name


@dataclass(frozen=True)
class UnitState:
    """What systemd says about a unit right now."""

    name: str
    load_state: str  # loaded, not-found, bad-setting, error, masked
    active_state: str  # active, reloading, inactive, failed, activating, deactivating
    sub_state: str  # running, start, auto-restart, dead, failed, exited, ...
    main_pid: int = 0
    n_restarts: int = 0
    result: str = "success"  # success, exit-code, signal, timeout, start-limit-hit, ...
    exec_main_status: int = 0
    invocation_id: str = ""
    need_daemon_reload: bool = False
    fragment_path: str = ""  # the unit file systemd loaded ('' when it has none: not-found)
    dropin_paths: tuple[str, ...] = ()
    unit_file_state: str = ""  # enabled, static, linked, alias, masked, generated, transient, bad, ... ('' unknown)

    @property
    def is_active(self) -> bool:
        return self.active_state in ("active", "reloading")

    @property
    def is_failed(self) -> bool:
        return self.active_state == "failed" or self.sub_state in ("failed", "auto-restart")


class JobFailedError(SystemdError):
    """A start/restart/reload/stop job ended other than 'done'; ``state`` is the unit right after."""

    def __init__(
        self, message: str, *, unit: str, operation: str, state: UnitState | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.unit = unit
        self.operation = operation
        self.state = state


def failure_detail(state: UnitState | None) -> str:
    """Return 'Result=exit-code, ExecMainStatus=3' (or '') for an error message."""
    if state is None or (state.result in ("", "success") and state.exec_main_status == 0):
        return ""
    return f"Result={state.result}, ExecMainStatus={state.exec_main_status}"


_TRANSIENT_PREFIX = re.compile(r"^unitctl-run-[A-Za-z0-9:_.-]*$")


def check_transient_prefix(prefix: str) -> str:
    """Return ``prefix`` when it names only unitctl's own check units (``unitctl-run-...``), else raise."""
    if not _TRANSIENT_PREFIX.fullmatch(prefix) or len(prefix) > 200:
        raise SystemdError(f"{prefix!r} is not a prefix of unitctl's check units (unitctl-run-...)")
    return prefix


def transient_args(spec: TransientSpec) -> list[str]:
    """Return the arguments after the executable, escaped unless the spec asks systemd to expand variables."""
    return list(spec.argv[1:]) if spec.expand_variables else escape_exec_argv(spec.argv)[1:]


def escape_exec_argv(argv: Sequence[str]) -> list[str]:
    """Return ``argv`` with '$' doubled in its arguments: systemd expands $VAR in a transient ExecStart= too."""
    # argv[0] is also the executable's path, which systemd never expands.
    return [*argv[:1], *(arg.replace("$", "$$") for arg in argv[1:])]


@dataclass(frozen=True)
class TransientResult:
    """How a command run as a transient unit ended."""

    returncode: int  # exit status; 128 + signal number when killed (shell convention)
    output: str  # stdout and stderr, as the journal/pipe delivered them
    result: str = "success"  # systemd's Result=: success, exit-code, signal, core-dump, timeout

    @property
    def timed_out(self) -> bool:
        return self.result == "timeout"


# systemd's own exit statuses (exit-status.h) when it cannot set up the process: no command output explains them.
SYSTEMD_EXIT_STATUS = {
    200: "CHDIR (WorkingDirectory= is missing or not accessible)",
    203: "EXEC (the executable cannot be run)",
    204: "MEMORY",
    209: "STDOUT",
    214: "SETSCHEDULER",
    216: "GROUP (the Group= does not exist)",
    217: "USER (the User= does not exist)",
    218: "CAPABILITIES",
    226: "NAMESPACE",
    228: "SECCOMP",
    234: "RUNTIME_DIRECTORY",
    236: "CHOWN",
    243: "CREDENTIALS",
}
CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3


def transient_outcome(
    what: str, *, result: str, exec_main_code: int, exec_main_status: int, output: str
) -> TransientResult:
    """Turn a finished transient unit's Result/ExecMainCode/ExecMainStatus into a TransientResult.

    Raise SystemdError when the command never ran (e.g. Result=resources: an EnvironmentFile= is missing).
    """
    if exec_main_code == CLD_EXITED:
        code = exec_main_status
    elif exec_main_code in (CLD_KILLED, CLD_DUMPED):
        code = 128 + exec_main_status
    elif result in ("", "success"):
        code = 0
    else:
        raise SystemdError(
            f"{what} could not start: Result={result}",
            hint="check the user, working directory and EnvironmentFile= of the service",
        )
    if code in SYSTEMD_EXIT_STATUS and exec_main_code == CLD_EXITED:
        if output and not output.endswith("\n"):
            output += "\n"
        output += f"(systemd could not start the command: status={code}/{SYSTEMD_EXIT_STATUS[code]})\n"
    return TransientResult(returncode=code, output=output, result=result or "success")


@dataclass(frozen=True)
class TransientSpec:
    """The execution environment a transient check runs in: the service's own."""

    argv: Sequence[str]
    user: str | None = None
    group: str | None = None
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    env_files: Sequence[tuple[str, bool]] = ()  # (path, ignore_if_missing) as EnvironmentFile=-path says
    timeout: float = 120.0
    # False: every argument reaches the command literally ('$' doubled). True: the arguments are words of a unit's
    # ExecStart= and systemd expands $VAR/${VAR} in them from this environment, as it does for the service.
    expand_variables: bool = False
    # The transient unit's name starts with this (validated), so a later run can remove leftovers by name.
    name_prefix: str = "unitctl-run-"
    unit_name: str | None = None  # start_transient: this exact name (validated against the prefix)
    # Mount namespace of the command (root runs systemd-run): (source, destination) binds, read-write and read-only,
    # and empty read-only tmpfs mounts laid under them (a canary sees its own tree at the checkout's path).
    binds: Sequence[tuple[str, str]] = ()
    ro_binds: Sequence[tuple[str, str]] = ()
    temporary_fs: Sequence[str] = ()
    runtime_directory: str | None = None  # RuntimeDirectory= (relative to /run), owned by the User=


def mount_path(path: str) -> str:
    """Return ``path`` for a BindPaths=/TemporaryFileSystem= value; refuse what systemd would read otherwise."""
    # ':' separates source and destination, whitespace separates entries, '-'/'+' prefixes change the meaning.
    if not path.startswith("/") or any(c in path for c in ": \t\n\\\"'%"):
        raise SystemdError(f"cannot mount {path!r} in a transient unit: an absolute path without ':', blanks or quotes")
    return path


def transient_name(spec: TransientSpec) -> str:
    """Return the exact unit name a started transient unit gets; raise SystemdError unless it is one of unitctl's."""
    name = spec.unit_name or ""
    if not name.endswith(".service"):
        raise SystemdError(f"start_transient needs a unit name ending in .service, not {name!r}")
    check_transient_prefix(name.removesuffix(".service"))
    return validate_unit_name(name)


class SystemdBackend(Protocol):
    """What unitctl needs from systemd. Every method raises SystemdError on failure."""

    name: str
    local: bool  # its units run on this host: /proc shows their processes (the guard reads their sockets there)

    def daemon_reload(self) -> None: ...
    def start(self, unit: str) -> None: ...
    def stop(self, unit: str) -> None: ...
    def restart(self, unit: str) -> None: ...  # waits for the job to finish
    def reload(self, unit: str) -> None: ...  # ExecReload= (HUP for Gunicorn); waits for the job
    def reset_failed(self, unit: str) -> None: ...
    def enable(self, unit: str) -> None: ...  # its [Install] links, then a daemon-reload (as systemctl enable)
    def disable(self, unit: str) -> None: ...
    def state(self, unit: str) -> UnitState: ...
    def run_transient(self, spec: TransientSpec) -> TransientResult: ...
    def start_transient(self, spec: TransientSpec) -> str: ...  # starts spec.unit_name, does not wait; returns it
    def journal(self, unit: str, *, invocation_id: str | None = None, lines: int = 50) -> list[str]: ...
    def remove_transient_units(self, prefix: str) -> list[str]: ...  # stop + reset-failed; returns the names
    def unit_pids(self, unit: str) -> set[int] | None: ...  # the PIDs in its cgroup now; None: cannot tell
