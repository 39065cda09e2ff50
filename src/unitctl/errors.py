"""The one error tree of unitctl, and the exit codes that are its public contract.

    UnitctlError                    (exit 2 unless a subclass says otherwise)
    ├── UsageError                  2  the command line or unitctl.toml is wrong
    ├── RefusedError                3  refused before anything changed in systemd
    │   ├── InputError                 a file is missing or unreadable
    │   ├── UnitSyntaxError            a unit file systemd would not load as written
    │   ├── NotGunicornError           the unit does not run Gunicorn
    │   ├── TemplateUnitError          the "unit" is still a template (Jinja, @placeholder@)
    │   ├── VerificationError          systemd-analyze verify or our own checks found errors
    │   ├── PreImportError             the new code does not import in the service's environment
    │   ├── LockHeldError              another apply of the same unit is running
    │   ├── GitStateError              dirty or shallow tree, unknown revision
    │   ├── ReadyUrlError              the readiness URL does not answer (or redirects) while the service runs
    │   ├── UnitPathError              the unit's file cannot be written where systemd reads it (template, link, ...)
    │   ├── HookError                  a hook (--build-cmd, --pre-switch-cmd, --post-ready-cmd) failed or timed out
    │   └── SandboxError               the systemd sandbox cannot start here
    ├── SystemdError                3  systemd refused an operation (after the switch, apply rolls back)
    ├── RolledBackError             4  the release failed after the switch; rollback verified healthy
    └── RollbackFailedError         5  the rollback failed or could not be verified: a human is needed

Every message is one line that names the object, what is wrong, and what to do next.
Third-party errors are translated at the edge: ``raise InputError(...) from exc``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of every unitctl command (documented in README.md)."""

    OK = 0
    CHANGES_PENDING = 1
    USAGE = 2
    REFUSED = 3
    ROLLED_BACK = 4
    NEEDS_HUMAN = 5


class UnitctlError(Exception):
    """Base of every error unitctl reports; carries its exit code."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class UsageError(UnitctlError):
    exit_code = ExitCode.USAGE


class RefusedError(UnitctlError):
    """Nothing was changed in systemd or on disk."""

    exit_code = ExitCode.REFUSED


class InputError(RefusedError):
    pass


class UnitSyntaxError(RefusedError):
    pass


class NotGunicornError(RefusedError):
    pass


class TemplateUnitError(RefusedError):
    pass


class VerificationError(RefusedError):
    pass


class PreImportError(RefusedError):
    pass


class LockHeldError(RefusedError):
    pass


class GitStateError(RefusedError):
    pass


class ReadyUrlError(RefusedError):
    pass


class UnitPathError(RefusedError):
    pass


class SandboxError(RefusedError):
    pass


class HookError(RefusedError):
    """A hook failed: exit 3 before the switch; after it the deploy rolls back (exit 4 or 5)."""


class SystemdError(UnitctlError):
    exit_code = ExitCode.REFUSED


class RolledBackError(UnitctlError):
    exit_code = ExitCode.ROLLED_BACK


class RollbackFailedError(UnitctlError):
    exit_code = ExitCode.NEEDS_HUMAN
