"""``unitctl verify``: systemd-analyze verify and unitctl's own checks of a candidate unit file."""

from __future__ import annotations

from pathlib import Path

from unitctl.commands.report import CommandResult, Outcome, current
from unitctl.commands.settings import VerifySettings, unit_or_none


def run(*, settings: VerifySettings) -> CommandResult:
    """Check a unit file; errors make the result carry a VerificationError (exit 3), warnings are printed."""
    from unitctl.errors import VerificationError
    from unitctl.verify import verify_unit

    file = settings.file
    current().unit = unit_or_none(settings.name or Path(file).name)
    report = verify_unit(Path(file), name=settings.name, offline=settings.offline)
    lines = [f"error: {e}" for e in report.errors] + [f"warning: {w}" for w in report.warnings]
    error = None
    if report.errors:
        n = len(report.errors)
        error = VerificationError(
            f"{file}: {n} error{'s' if n > 1 else ''} found", hint="fix them and run 'unitctl verify' again"
        )
        message = error.message
    else:
        count = len(report.warnings)
        message = f"{file}: ok" + (f" ({count} warning{'s' if count > 1 else ''})" if count else "")
        lines.append(message)
    return CommandResult(
        command="verify",
        unit=current().unit,
        outcome=Outcome.REFUSED if error else Outcome.OK,
        message=message,
        result={"file": file, "errors": list(report.errors), "warnings": list(report.warnings)},
        text="".join(line + "\n" for line in lines),
        error=error,
    )
