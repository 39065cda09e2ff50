"""Backends that talk to systemd; ``get_backend`` picks one."""

from __future__ import annotations

from unitctl.errors import SystemdError, UsageError
from unitctl.systemd.base import SystemdBackend

BACKENDS = ("auto", "dbus", "systemctl")


def get_backend(prefer: str = "auto") -> SystemdBackend:
    """Return the dbus backend when pystemd imports and the system bus answers, else systemctl.

    An explicit "dbus" or "systemctl" raises SystemdError (with what to do) when that backend cannot work.
    """
    if prefer not in BACKENDS:
        raise UsageError(f"unknown systemd backend {prefer!r}", hint=f"choose one of {', '.join(BACKENDS)}")
    if prefer in ("auto", "dbus"):
        from unitctl.systemd.dbus import DbusBackend

        try:
            return DbusBackend()
        except SystemdError:
            if prefer == "dbus":
                raise
    from unitctl.systemd.systemctl import SystemctlBackend

    return SystemctlBackend()


__all__ = ["BACKENDS", "SystemdBackend", "get_backend"]
