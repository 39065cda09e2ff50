"""``unitctl render``: a unit (and its .socket) from the Jinja2 template, printed or written atomically."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from unitctl.commands.settings import RenderSettings


def run(*, settings: RenderSettings, err: Callable[[str], None]) -> str:
    """Render the unit; write it (and the .socket beside it) to ``settings.output``, or return the text to print.

    ``err`` receives the lines for stderr (warnings, what was written).
    """
    from unitctl.output import write_output
    from unitctl.render import render_from_flags

    output = settings.output
    result = render_from_flags(settings.flags, cpu_count=os.cpu_count())
    for warning in result.warnings:
        err(f"unitctl: warning: {warning}")
    if output:
        target = Path(output)
        write_output(target, result.service)
        err(f"wrote {target}")
        if result.socket is not None and result.socket_name:
            socket_path = target.parent / result.socket_name
            write_output(socket_path, result.socket)
            err(f"wrote {socket_path}")
        return ""
    if result.socket is None:
        return result.service
    return f"{result.service}\n# ==> {result.socket_name} <==\n{result.socket}"
