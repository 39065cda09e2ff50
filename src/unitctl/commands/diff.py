"""``unitctl diff``: the installed unit (with its drop-ins) against the desired one; changes pending exit 1."""

from __future__ import annotations

import os

from unitctl.commands.report import CommandResult, Outcome, current
from unitctl.commands.settings import DiffSettings, unit_or_none


def run(*, settings: DiffSettings, colour: bool = False) -> CommandResult:
    """Compare the installed unit with the desired one (secrets masked on both sides)."""
    from unitctl import diff
    from unitctl.desired import resolve

    current().unit = unit_or_none(settings.name)
    want = resolve(settings.name, settings.desired, cpu_count=os.cpu_count())
    found = diff.diff_installed(
        name=settings.name, root=settings.root, unit_file=want.unit_file, rendered=want.rendered, rewrite=want.rewrite
    )
    return CommandResult(
        command="diff",
        unit=current().unit,
        outcome=Outcome.CHANGES_PENDING if found.differs else Outcome.OK,
        message=found.summary,
        result={"differs": found.differs, "summary": found.summary, "diff": "".join(found.lines)},
        text="".join(diff.colourize(found.lines, colour)) + found.summary + "\n",
    )
