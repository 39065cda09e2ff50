"""SystemdBackend over D-Bus with pystemd (imported when the backend is built, never at import time).

Jobs are awaited like systemctl does: subscribe to the manager's JobRemoved signal before queueing the
job, then process the bus until our job's removal arrives with its result ('done' is success).
Transient commands write their stdout and stderr into a temporary file whose descriptor is handed to
systemd; the unit stays loaded after exit (RemainAfterExit=) so its exit status can be read, then it is
stopped and collected. journal() reads the journal with journalctl, like the systemctl backend.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

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
from unitctl.systemd.systemctl import journal_lines, resolve_executable, transient_unit_name
from unitctl.unitname import validate_unit_name

DEST = b"org.freedesktop.systemd1"
MANAGER_PATH = b"/org/freedesktop/systemd1"
MANAGER_IFACE = b"org.freedesktop.systemd1.Manager"
UNIT_IFACE = b"org.freedesktop.systemd1.Unit"
SERVICE_IFACE = b"org.freedesktop.systemd1.Service"
PROPS_IFACE = b"org.freedesktop.DBus.Properties"


MS_REC = 16384  # <sys/mount.h>: bind mounts recursively, as BindPaths= does by default


def dbus_message(exc: BaseException) -> str:
    """Return systemd's own message from a pystemd DBusError (bytes, maybe with a name prefix)."""
    msg = getattr(exc, "err_message", None)
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    if msg:
        return str(msg).strip()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


class DbusBackend:
    """Talk to systemd over the system bus with pystemd."""

    name = "dbus"
    local = True

    def __init__(self, *, job_timeout: float = 300.0) -> None:
        try:
            from pystemd.dbusexc import DBusBaseError
            from pystemd.dbuslib import DBus
        except ImportError as exc:
            raise SystemdError(
                f"the dbus backend needs pystemd, which does not import: {exc}",
                hint="install unitctl[dbus] (needs libsystemd-dev, pkg-config) or use --backend systemctl",
            ) from exc
        self._error_type: type[BaseException] = DBusBaseError
        self.job_timeout = job_timeout
        self._removed: dict[bytes, bytes] = {}
        self._awaited: set[bytes] = set()
        try:
            self._bus = DBus()
            self._bus.open()
            self._call(MANAGER_PATH, MANAGER_IFACE, b"Subscribe", b"", [])
            removed, awaited = self._removed, self._awaited

            def on_job_removed(msg: Any, error: Any = None, userdata: Any = None) -> None:
                msg.process_reply(False)
                _job_id, job_path, _unit, result = msg.body
                # The reply naming our job is read before queued signals are dispatched, so
                # every job we wait for is in `awaited` by the time its JobRemoved is handled.
                if job_path in awaited:
                    removed[job_path] = result

            # pystemd keeps only a borrowed pointer to the callback: hold a reference for the bus's life.
            self._callback = on_job_removed
            self._bus.match_signal(DEST, MANAGER_PATH, MANAGER_IFACE, b"JobRemoved", on_job_removed)
        except self._error_type as exc:
            raise SystemdError(
                f"cannot talk to systemd over the system bus: {dbus_message(exc)}",
                hint="is dbus running? or use --backend systemctl",
            ) from exc

    def close(self) -> None:
        """Close the bus connection."""
        self._bus.close()

    # -- low level -------------------------------------------------------------------------------

    def _call(self, path: bytes, iface: bytes, method: bytes, signature: bytes, args: list[Any]) -> Any:
        from pystemd.dbuslib import apply_signature

        packed = apply_signature(signature, args) if signature else []
        return self._bus.call_method(DEST, path, iface, method, packed).body

    def _pump(self, timeout_usec: int) -> None:
        # Our match rule routes only JobRemoved signals to this connection, so little queues up.
        # process() returns an empty message both when idle and after dispatching to our callback;
        # sd_bus_wait returns at once while messages are still queued, so the caller's loop drains them.
        while not self._bus.process().is_empty():
            pass
        self._bus.wait(timeout_usec)
        while not self._bus.process().is_empty():
            pass

    @staticmethod
    def _unit_path(unit: str) -> bytes:
        from pystemd.dbuslib import path_encode

        return bytes(path_encode(b"/org/freedesktop/systemd1/unit", unit.encode()))

    def _props(self, unit: str, iface: bytes) -> dict[bytes, Any]:
        body = self._call(self._unit_path(unit), PROPS_IFACE, b"GetAll", b"s", [iface])
        return dict(body) if isinstance(body, dict) else dict(body[0])

    # -- jobs ------------------------------------------------------------------------------------

    def _job(self, verb: str, method: bytes, unit: str) -> None:
        unit = validate_unit_name(unit)
        what = f"{verb} of {unit}"
        try:
            body = self._call(MANAGER_PATH, MANAGER_IFACE, method, b"ss", [unit.encode(), b"replace"])
            job = body[0] if isinstance(body, (list, tuple)) else body
            result = self._wait_job(job, what)
        except self._error_type as exc:
            raise self._job_error(verb, unit, dbus_message(exc)) from exc
        if result != b"done":
            raise self._job_error(verb, unit, f"job finished with result '{_s(result)}'")

    def _wait_job(self, job: bytes, what: str) -> bytes:
        deadline = time.monotonic() + self.job_timeout
        self._awaited.add(job)
        try:
            while job not in self._removed:
                if time.monotonic() >= deadline:
                    raise SystemdError(
                        f"{what} did not finish within {self.job_timeout:g}s", hint="check 'systemctl list-jobs'"
                    )
                self._pump(200_000)
            return self._removed.pop(job)
        finally:
            self._awaited.discard(job)

    def _job_error(self, verb: str, unit: str, message: str) -> JobFailedError:
        try:
            state: UnitState | None = self.state(unit)
        except SystemdError:
            state = None
        detail = failure_detail(state)
        return JobFailedError(
            f"{verb} of {unit} failed: {message}" + (f" ({detail})" if detail else ""),
            unit=unit,
            operation=verb,
            state=state,
            hint=f"see 'journalctl -u {unit}'",
        )

    def daemon_reload(self) -> None:
        try:
            self._call(MANAGER_PATH, MANAGER_IFACE, b"Reload", b"", [])
        except self._error_type as exc:
            raise SystemdError(f"daemon-reload failed: {dbus_message(exc)}") from exc

    def enable(self, unit: str) -> None:
        unit = validate_unit_name(unit)
        try:
            # (files, runtime=False: under /etc, force=False); then a reload, as 'systemctl enable' does.
            self._call(MANAGER_PATH, MANAGER_IFACE, b"EnableUnitFiles", b"asbb", [[unit.encode()], False, False])
            self._call(MANAGER_PATH, MANAGER_IFACE, b"Reload", b"", [])
        except self._error_type as exc:
            raise SystemdError(f"enable of {unit} failed: {dbus_message(exc)}") from exc

    def disable(self, unit: str) -> None:
        unit = validate_unit_name(unit)
        try:
            self._call(MANAGER_PATH, MANAGER_IFACE, b"DisableUnitFiles", b"asb", [[unit.encode()], False])
            self._call(MANAGER_PATH, MANAGER_IFACE, b"Reload", b"", [])
        except self._error_type as exc:
            raise SystemdError(f"disable of {unit} failed: {dbus_message(exc)}") from exc

    def start(self, unit: str) -> None:
        self._job("start", b"StartUnit", unit)

    def stop(self, unit: str) -> None:
        self._job("stop", b"StopUnit", unit)

    def restart(self, unit: str) -> None:
        self._job("restart", b"RestartUnit", unit)

    def reload(self, unit: str) -> None:
        self._job("reload", b"ReloadUnit", unit)

    def reset_failed(self, unit: str) -> None:
        unit = validate_unit_name(unit)
        try:
            self._call(MANAGER_PATH, MANAGER_IFACE, b"ResetFailedUnit", b"s", [unit.encode()])
        except self._error_type as exc:
            raise SystemdError(f"reset-failed of {unit} failed: {dbus_message(exc)}") from exc

    # -- state -----------------------------------------------------------------------------------

    def state(self, unit: str) -> UnitState:
        unit = validate_unit_name(unit)
        try:
            u = self._props(unit, UNIT_IFACE)
            svc = self._props(unit, SERVICE_IFACE) if unit.endswith(".service") else {}
        except self._error_type as exc:
            raise SystemdError(f"reading the state of {unit} failed: {dbus_message(exc)}") from exc
        inv = u.get(b"InvocationID") or []
        return UnitState(
            name=unit,
            load_state=_s(u.get(b"LoadState")),
            active_state=_s(u.get(b"ActiveState")),
            sub_state=_s(u.get(b"SubState")),
            main_pid=int(svc.get(b"MainPID") or 0),
            n_restarts=int(svc.get(b"NRestarts") or 0),
            result=_s(svc.get(b"Result")) or "success",
            exec_main_status=int(svc.get(b"ExecMainStatus") or 0),
            invocation_id=bytes(inv).hex() if inv else "",
            need_daemon_reload=bool(u.get(b"NeedDaemonReload")),
            fragment_path=_s(u.get(b"FragmentPath")),
            dropin_paths=tuple(_s(p) for p in u.get(b"DropInPaths") or ()),
            unit_file_state=_s(u.get(b"UnitFileState")),
        )

    # -- transient commands ----------------------------------------------------------------------

    def run_transient(self, spec: TransientSpec) -> TransientResult:
        if not spec.argv:
            raise SystemdError("run_transient needs a command; got an empty argv")
        name = transient_unit_name(spec.name_prefix)
        what = f"running {spec.argv[0]!r} as transient unit {name}"
        with tempfile.TemporaryFile() as out, open(os.devnull, "rb") as devnull:
            props = _service_props(spec, "check")
            props.update({
                # Keep the unit after exit so its status can be read; we stop and collect it below.
                b"RemainAfterExit": True,
                b"StandardInputFileDescriptor": devnull.fileno(),
                b"StandardOutputFileDescriptor": out.fileno(),
                b"StandardErrorFileDescriptor": out.fileno(),
            })  # fmt: skip
            try:
                final = self._run_unit(name, props, spec.timeout + 30, what)
            finally:
                self._discard(name)
            out.seek(0)
            output = out.read().decode("utf-8", "replace")
        return transient_outcome(
            what,
            result=_s(final.get(b"Result")),
            exec_main_code=int(final.get(b"ExecMainCode") or 0),
            exec_main_status=int(final.get(b"ExecMainStatus") or 0),
            output=output,
        )

    def start_transient(self, spec: TransientSpec) -> str:
        name = transient_name(spec)
        props = _service_props(spec, "canary")
        self._discard(name)  # a failed unit of an earlier run keeps its name taken until reset
        from pystemd.systemd1 import Manager

        manager = Manager(bus=self._bus)
        manager.load()
        what = f"starting {spec.argv[0]!r} as transient unit {name}"
        try:
            body = manager.Manager.StartTransientUnit(name.encode(), b"fail", props)
            self._wait_job(body[0] if isinstance(body, (list, tuple)) else body, what)
        except self._error_type as exc:
            raise SystemdError(f"{what} failed: {dbus_message(exc)}") from exc
        return name

    def _run_unit(self, name: str, props: dict[bytes, Any], timeout: float, what: str) -> dict[bytes, Any]:
        from pystemd.systemd1 import Manager

        manager = Manager(bus=self._bus)
        manager.load()
        try:
            body = manager.Manager.StartTransientUnit(name.encode(), b"fail", props)
            job = body[0] if isinstance(body, (list, tuple)) else body
            self._wait_job(job, what)
            deadline = time.monotonic() + timeout
            while True:
                unit = self._props(name, UNIT_IFACE)
                # exited: RemainAfterExit after the process ended; failed/dead: it never ran or failed.
                if _s(unit.get(b"SubState")) in ("exited", "failed", "dead"):
                    return self._props(name, SERVICE_IFACE)
                if time.monotonic() >= deadline:
                    raise SystemdError(f"{what} did not finish within {timeout:g}s")
                time.sleep(0.05)
        except self._error_type as exc:
            raise SystemdError(f"{what} failed: {dbus_message(exc)}") from exc

    def _discard(self, name: str) -> None:
        # Best effort: stop (collects a RemainAfterExit unit) and forget a failed one.
        for method in (b"StopUnit", b"ResetFailedUnit"):
            args = [name.encode(), b"replace"] if method == b"StopUnit" else [name.encode()]
            try:
                body = self._call(MANAGER_PATH, MANAGER_IFACE, method, b"ss" if len(args) == 2 else b"s", args)
                if method == b"StopUnit":
                    self._wait_job(body[0] if isinstance(body, (list, tuple)) else body, f"stopping {name}")
            except (self._error_type, SystemdError):
                pass

    def journal(self, unit: str, *, invocation_id: str | None = None, lines: int = 50) -> list[str]:
        return journal_lines(unit, invocation_id=invocation_id, lines=lines)

    def unit_pids(self, unit: str) -> set[int] | None:
        unit = validate_unit_name(unit)
        if not unit.endswith(".service"):
            return None
        try:
            group = _s(self._props(unit, SERVICE_IFACE).get(b"ControlGroup"))
        except self._error_type:
            return None
        return cgroup_pids(group)

    def remove_transient_units(self, prefix: str) -> list[str]:
        pattern = check_transient_prefix(prefix) + "*.service"
        try:
            body = self._call(MANAGER_PATH, MANAGER_IFACE, b"ListUnitsByPatterns", b"asas", [[], [pattern.encode()]])
        except self._error_type as exc:
            raise SystemdError(f"listing {pattern} failed: {dbus_message(exc)}") from exc
        units = body[0] if body and isinstance(body[0], list) else body
        names = [_s(u[0]) for u in units or []]
        names = [n for n in names if n.startswith(prefix)]
        for name in names:
            self._discard(name)
        return names


def _service_props(spec: TransientSpec, kind: str) -> dict[bytes, Any]:
    """Return the transient service's properties from ``spec``: command, identity, environment, mounts.

    One home for what ``systemd-run``'s flags say in the systemctl backend (``transient_argv``): a check and a
    canary must see the same identity and the same mount namespace.
    """
    if not spec.argv:
        raise SystemdError("a transient unit needs a command; got an empty argv")
    for key, value in spec.env.items():
        if not key or "=" in key or "\n" in value:
            raise SystemdError(f"environment variable {key!r} cannot be passed to a transient unit")
    exe = resolve_executable(spec.argv[0])
    argv = [exe.encode(), *(a.encode() for a in transient_args(spec))]
    props: dict[bytes, Any] = {
        b"Description": f"unitctl {kind}: {' '.join(spec.argv)[:200]}".encode(),
        b"Type": b"exec",
        b"ExecStart": [(exe.encode(), argv, False)],
        b"RuntimeMaxUSec": int(max(1.0, spec.timeout) * 1_000_000),
    }
    if spec.user:
        props[b"User"] = spec.user.encode()
    if spec.group:
        props[b"Group"] = spec.group.encode()
    if spec.cwd:
        props[b"WorkingDirectory"] = spec.cwd.encode()
    if spec.env:
        props[b"Environment"] = [f"{k}={v}".encode() for k, v in spec.env.items()]
    if spec.env_files:
        props[b"EnvironmentFiles"] = [(p.encode(), bool(ignore)) for p, ignore in spec.env_files]
    if spec.temporary_fs:
        props[b"TemporaryFileSystem"] = [(mount_path(p).encode(), b"ro") for p in spec.temporary_fs]
    for prop, pairs in ((b"BindPaths", spec.binds), (b"BindReadOnlyPaths", spec.ro_binds)):
        if pairs:
            # (source, destination, ignore a missing source, mount flags): MS_REC as systemd's own parser sets.
            props[prop] = [(mount_path(a).encode(), mount_path(b).encode(), False, MS_REC) for a, b in pairs]
    if spec.runtime_directory:
        props[b"RuntimeDirectory"] = [spec.runtime_directory.encode()]
    return props
