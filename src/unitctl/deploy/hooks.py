"""Hooks: the user's commands at named points of a deploy, run as the service, never as root.

Each hook is a command line split with shlex (no shell: a user who wants one writes ``sh -c '...'``) and run as a
transient unit with the identity the import check uses (``preimport.as_service``: the candidate unit's User=,
Group=, Environment=, EnvironmentFile=), in the app's checkout (--repo; without one, the unit's
WorkingDirectory=), killed by systemd after --hook-timeout seconds. Its output goes into the attempt's history
record (masked), and each hook gets one phase line.

The points (docs/hooks.md), one list of commands each, run in order:

- ``build`` (--build-cmd): after each checkout: in the canary's tree before the switch, in the live tree after its
  checkout, and again after a rollback's checkout of the previous release;
- ``pre-switch`` (--pre-switch-cmd): once, in the canary's tree (the live tree when nothing needs a checkout),
  after the canary was ready and before the switch;
- ``post-ready`` (--post-ready-cmd): after the guard said the new release is ready, in the live tree.

A failure before the switch refuses the release (exit 3, the live service untouched); after it, the deploy rolls
back (exit 4, or 5 when the rollback fails too). What a hook changed outside the checkout (a database migrated,
a cache warmed) is not undone.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from unitctl import history
from unitctl.deploy.attempt import Attempt
from unitctl.deploy.capture import transient_prefix
from unitctl.errors import HookError, SystemdError, UsageError
from unitctl.systemd.base import TransientResult, TransientSpec

if TYPE_CHECKING:
    from unitctl.deploy.canary import Tree

POINTS = ("build", "pre-switch", "post-ready")
FLAGS = {"build": "--build-cmd", "pre-switch": "--pre-switch-cmd", "post-ready": "--post-ready-cmd"}
# systemd's PATH for system services: a hook finds the venv's programs before these (see hook_spec).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
# Of each hook's output, the history keeps this much (its end: where a failure says what went wrong).
OUTPUT_LIMIT = 8000


def split(point: str, command: str) -> list[str]:
    """Return ``command`` split into argv as a shell would, without running one; raise UsageError if it is not."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(
            f"{FLAGS[point]} {command!r} is not a command line: {exc}",
            hint=f"give it as one quoted argument, e.g. {FLAGS[point]} 'pip install -r requirements.txt'",
        ) from exc
    if not argv:
        raise UsageError(f"{FLAGS[point]} is empty", hint="give the command to run, or leave the option out")
    return argv


def hook_spec(att: Attempt, argv: Sequence[str], *, unit_text: str, tree: Tree | None = None) -> TransientSpec:
    """Return the transient unit a hook runs as: the service's identity, in the checkout (or the canary's tree).

    A bare program name is looked up in the service's venv first (``pip``, ``python`` mean the app's), and the
    venv's bin directory leads PATH unless the unit sets its own; a relative path is taken from the checkout.
    """
    from unitctl.preimport import as_service, service_view

    req = att.req
    view = service_view(unit_text, unit=req.unit, unit_dir=req.unit_dir)
    cwd = os.path.abspath(req.repo) if req.repo is not None else view.cwd
    venv_bin = os.path.dirname(view.python) if os.path.isabs(view.python) else None
    program = argv[0]
    if "/" not in program and venv_bin is not None and _executable(os.path.join(venv_bin, program)):
        program = os.path.join(venv_bin, program)
    elif "/" in program and not os.path.isabs(program) and cwd:
        program = os.path.normpath(os.path.join(cwd, program))
    spec = as_service(view, [program, *argv[1:]], timeout=req.hook_timeout)
    env = dict(spec.env)
    if venv_bin is not None and "PATH" not in env:
        env["PATH"] = f"{venv_bin}:{SYSTEMD_PATH}"
    spec = replace(spec, cwd=cwd, env=env, name_prefix=transient_prefix(req.unit))
    if tree is not None:
        spec = replace(spec, **tree.namespace(writable=True))  # type: ignore[arg-type]
    return spec


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def run(
    att: Attempt, point: str, commands: Sequence[str], *, unit_text: str | None = None, tree: Tree | None = None
) -> None:
    """Run the ``point`` hooks in order as the service; raise HookError at the first that fails or times out.

    ``unit_text``: the unit whose identity they take (default: the candidate's); ``tree``: the canary's tree,
    shown at the checkout's path.
    """
    text = unit_text if unit_text is not None else candidate_text(att)
    for command in commands:
        _run_one(att, point, command, text, tree)


def _run_one(att: Attempt, point: str, command: str, text: str, tree: Tree | None) -> None:
    req = att.req
    spec = hook_spec(att, split(point, command), unit_text=text, tree=tree)
    who = spec.user or "root"
    where = "the canary's tree" if tree is not None else spec.cwd or "/"
    with att.phase(f"hook {point}") as detail:
        detail.append(f"{command} (as {who}, in {where})")
        try:
            result = att.edges.backend.run_transient(spec)
        except SystemdError as exc:
            raise HookError(
                f"{req.unit}: the {point} hook {command!r} could not run: {exc.message}",
                hint=f"fix {FLAGS[point]}: the program must exist for the service's user",
            ) from exc
        keep_output(att, point, command, result)
        if result.timed_out:
            detail.append(f"killed after {req.hook_timeout:g} s")
            raise HookError(
                f"{req.unit}: the {point} hook {command!r} did not finish within {req.hook_timeout:g} s and was killed",
                hint="make it faster or raise --hook-timeout; its output is in 'unitctl history'",
            )
        if result.returncode != 0:
            last = last_line(result.output) or f"exit status {result.returncode}"
            detail.append(f"exit {result.returncode}")
            raise HookError(
                f"{req.unit}: the {point} hook {command!r} exited {result.returncode}: {last}",
                hint="fix the hook or the release; its full output is in 'unitctl history'",
            )


def keep_output(att: Attempt, point: str, command: str, result: TransientResult) -> None:
    """Append a hook's output (its end) to the attempt's record; masked when the record is written."""
    text = result.output[-OUTPUT_LIMIT:]
    if text and not text.endswith("\n"):
        text += "\n"
    how = f"exit {result.returncode}" + ("" if result.result == "success" else f" ({result.result})")
    att.record.output += f"--- {point} hook {command!r}: {how} ---\n{text}"


def candidate_text(att: Attempt) -> str:
    """Return the unit being deployed, as text."""
    assert att.facts is not None
    return att.facts.candidate.decode("utf-8", "replace")


def previous_text(att: Attempt) -> str:
    """Return the unit the previous release runs with (its rebuild takes that identity).

    During a deploy, the unit systemd ran before it (the candidate for a first deploy); when a later command
    finishes a dead deploy's rollback, the copy the history kept of it, else the unit file as it is now.
    """
    if att.facts is not None:
        return (att.facts.loaded or att.facts.candidate).decode("utf-8", "replace")
    digest = att.record.unit_sha256
    data = history.stored_unit(att.req.history_dir, digest) if digest else None
    if data is None:
        unit = att.undo.get("unit")
        path = Path(unit.path) if unit is not None and unit.path else att.req.unit_dir / att.req.unit
        with contextlib.suppress(OSError):
            data = path.read_bytes()
    if data is None:
        raise HookError(f"{att.req.unit}: no unit file to take the build hooks' user from")
    return data.decode("utf-8", "replace")


def last_line(text: str) -> str:
    """Return the line of ``text`` that says what went wrong (an exception's, else the last one)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # The exception line of a traceback is the last; Gunicorn may add a shutdown line after it.
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line[:300]
    return lines[-1][:300] if lines else ""
