"""The result of a command and the one place it is printed: human text, or the ``--json`` envelope.

Every reporting command (diff, verify, apply, rollback, status, history, deploy) with ``--json`` prints exactly
one JSON object on stdout, errors included (docs/json.md)::

    {"schema_version": 1, "command": "apply", "unit": "app.service", "outcome": "deployed", "exit_code": 0,
     "message": "...", "hint": null, "result": {...}}
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Any

from unitctl.errors import ExitCode, UnitctlError

SCHEMA_VERSION = 1


class Outcome(StrEnum):
    """How a command ended, as the envelope's ``outcome`` names it (one value per exit code, 0 has three)."""

    OK = "ok"  # a read-only command succeeded (status, history, verify clean, diff without changes)
    DEPLOYED = "deployed"  # apply/rollback/deploy switched and the guard said ready
    NOTHING_TO_DO = "nothing-to-do"
    CHANGES_PENDING = "changes-pending"  # diff, verify or a dry run found changes
    USAGE_ERROR = "usage-error"
    REFUSED = "refused"
    ROLLED_BACK = "rolled-back"
    ROLLBACK_FAILED = "rollback-failed"

    @property
    def exit_code(self) -> ExitCode:
        return _EXIT_CODES[self]

    @classmethod
    def of_error(cls, exc: UnitctlError) -> Outcome:
        """Return the outcome an error ends a command with (from its exit code)."""
        return cls.of_failure(int(exc.exit_code))

    @classmethod
    def of_failure(cls, exit_code: int) -> Outcome:
        """Return the outcome of a command that failed with this exit code (2 to 5)."""
        return next(o for o in _ERROR_OUTCOMES if o.exit_code == exit_code)


_EXIT_CODES = {
    Outcome.OK: ExitCode.OK,
    Outcome.DEPLOYED: ExitCode.OK,
    Outcome.NOTHING_TO_DO: ExitCode.OK,
    Outcome.CHANGES_PENDING: ExitCode.CHANGES_PENDING,
    Outcome.USAGE_ERROR: ExitCode.USAGE,
    Outcome.REFUSED: ExitCode.REFUSED,
    Outcome.ROLLED_BACK: ExitCode.ROLLED_BACK,
    Outcome.ROLLBACK_FAILED: ExitCode.NEEDS_HUMAN,
}
_ERROR_OUTCOMES = (Outcome.USAGE_ERROR, Outcome.REFUSED, Outcome.ROLLED_BACK, Outcome.ROLLBACK_FAILED)


@dataclass(frozen=True)
class CommandResult:
    """What a command produced: its outcome, one-line message, JSON payload and human text.

    ``error`` is set when the command produced a result and still fails (a rollback, verify's errors): the result
    is printed, then the error is raised for the one error handler (its stderr line and exit code).
    """

    command: str
    unit: str | None
    outcome: Outcome
    message: str
    result: Mapping[str, Any] | None = None
    text: str = ""  # what goes to stdout without --json
    error: UnitctlError | None = None

    @property
    def exit_code(self) -> int:
        return int(self.error.exit_code if self.error is not None else self.outcome.exit_code)


def envelope(
    *,
    command: str | None,
    unit: str | None,
    outcome: Outcome,
    message: str,
    hint: str | None = None,
    result: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the ``--json`` envelope (message and hint masked)."""
    from unitctl.masking import mask

    return {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "unit": unit,
        "outcome": outcome.value,
        "exit_code": int(outcome.exit_code),
        "message": mask(message),
        "hint": mask(hint) if hint else None,
        "result": dict(result) if result is not None else None,
    }


def result_envelope(res: CommandResult) -> dict[str, Any]:
    """Return the envelope of a command's result (its error's message and hint when it failed)."""
    error = res.error
    if error is not None:
        return envelope(command=res.command, unit=res.unit, outcome=Outcome.of_error(error), message=error.message,
                        hint=error.hint, result=res.result)  # fmt: skip
    return envelope(command=res.command, unit=res.unit, outcome=res.outcome, message=res.message, result=res.result)


def dumps(data: Any) -> str:
    """Serialize a JSON document as unitctl prints it."""
    return json.dumps(data, indent=2, sort_keys=True, default=str)


@dataclass
class Invocation:
    """What the one error handler needs to know about the command running: its verb, --json, its unit."""

    command: str | None = None
    as_json: bool = False
    unit: str | None = None
    printed: bool = False  # stdout already carries this command's output (an envelope with a result)


CURRENT: contextvars.ContextVar[Invocation] = contextvars.ContextVar("unitctl_invocation")


def current() -> Invocation:
    """Return this command line's invocation (a fresh one outside the CLI)."""
    try:
        return CURRENT.get()
    except LookupError:
        inv = Invocation()
        CURRENT.set(inv)
        return inv


def emit(res: CommandResult, *, as_json: bool, out: IO[str]) -> int:
    """Print a result (the envelope with --json, else its text); return its exit code or raise its error."""
    from unitctl.deploy.progress import safe_write, settle

    inv = current()
    inv.unit = res.unit or inv.unit
    if as_json:
        safe_write(out, dumps(result_envelope(res)) + "\n")
        inv.printed = True
    elif res.text:
        safe_write(out, res.text)
    settle()
    if res.error is not None:
        raise res.error
    return res.exit_code


def emit_failure(*, message: str, hint: str | None, exit_code: int, out: IO[str]) -> None:
    """Print the envelope of a failed command when --json was asked and its stdout is still empty."""
    from unitctl.deploy.progress import safe_write

    inv = current()
    if inv.as_json and inv.command in REPORTING and not inv.printed:
        outcome = Outcome.of_failure(exit_code)
        data = envelope(command=inv.command, unit=inv.unit, outcome=outcome, message=message, hint=hint)
        safe_write(out, dumps(data) + "\n")
        inv.printed = True


# The commands that take --json and print the envelope.
REPORTING = ("diff", "verify", "apply", "rollback", "status", "history", "deploy")
