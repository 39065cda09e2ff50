"""GitHub Actions output: ``::error::`` annotations and a Markdown step summary when ``GITHUB_ACTIONS=true``.

A pure formatter (``annotation``, ``summary_markdown``) and one small writer (``emit``). The apply command
calls ``emit(result, error=err)`` after every attempt, ``emit_error(err, ...)`` when no attempt started
(usage error, lock held). Outside GitHub Actions both do nothing.

Workflow-command escaping follows the runner's rules (actions/toolkit ``command.ts``): in the message
``%``, CR and LF become ``%25``, ``%0D``, ``%0A``; in a property value ``:`` and ``,`` are escaped as well.
Annotations go to stderr (the runner reads workflow commands on both streams) so ``--json`` output on
stdout stays one JSON object.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from unitctl import masking

JOURNAL_LINES = 20
MESSAGE_LIMIT = 4000  # GitHub shows at most a few KB of an annotation; keep the end with the cause

_TITLES = {
    "ok": "deployed",
    "nothing-to-do": "nothing to do",
    "would-change": "dry run: changes pending",
    "refused": "refused, nothing changed",
    "rolled-back": "failed and rolled back",
    "rollback-failed": "ROLLBACK FAILED: a human is needed",
    "interrupted": "interrupted",
    "usage-error": "usage error, nothing changed",
}
_OUTCOME_BY_EXIT = {0: "ok", 1: "would-change", 2: "usage-error", 3: "refused", 4: "rolled-back", 5: "rollback-failed"}


def in_actions(env: Mapping[str, str] | None = None) -> bool:
    """Return True when running as a GitHub Actions step."""
    return (os.environ if env is None else env).get("GITHUB_ACTIONS", "").lower() == "true"


def escape_data(text: str) -> str:
    """Escape a workflow-command message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow-command property value (title=, file=, ...)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, message: str, *, title: str | None = None) -> str:
    """Return one workflow command line, e.g. ``::error title=T::message``."""
    if level not in ("error", "warning", "notice"):
        raise ValueError(f"annotation level must be error, warning or notice, not {level!r}")
    if len(message) > MESSAGE_LIMIT:
        message = "…" + message[-MESSAGE_LIMIT:]
    props = f" title={escape_property(title)}" if title else ""
    return f"::{level}{props}::{escape_data(message)}"


def _as_dict(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    if isinstance(result, Mapping):
        return _attempt_of_envelope(result) if "schema_version" in result else dict(result)
    to_json = getattr(result, "to_json", None)
    if callable(to_json):
        data = to_json()
        if isinstance(data, Mapping):
            return dict(data)
    raise TypeError(
        f"cannot report a {type(result).__name__}: pass an ApplyResult, its to_json() dict or the --json envelope"
    )


def _attempt_of_envelope(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """Return the attempt inside ``apply --json``'s envelope (docs/json.md), with the envelope's error."""
    data = dict(envelope.get("result") or {})
    for key in ("unit", "command", "exit_code", "message"):
        data.setdefault(key, envelope.get(key))
    if int(envelope.get("exit_code") or 0) >= 2:
        hint = envelope.get("hint")
        data.setdefault("error", f"{envelope.get('message')}{f'; {hint}' if hint else ''}")
    return data


def _outcome(data: Mapping[str, Any]) -> str:
    outcome = data.get("outcome")
    if isinstance(outcome, str) and outcome:
        return outcome
    return _OUTCOME_BY_EXIT.get(int(data.get("exit_code", 2)), "refused")


def _title(data: Mapping[str, Any]) -> str:
    unit = data.get("unit") or "?"
    command = data.get("command") or "apply"
    outcome = _outcome(data)
    return f"unitctl {command} {unit}: {_TITLES.get(outcome, outcome)}"


def _short(rev: Any) -> str:
    return f"`{str(rev)[:12]}`" if rev else "–"


def _cell(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _fence(lines: Sequence[str]) -> str:
    longest = max((len(m) for line in lines for m in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def _attempt(result: Any, error: Any) -> dict[str, Any]:
    """Return the attempt as a dict, with the error's message and exit code when it ended in one."""
    data = _as_dict(result)
    if error is not None:
        data.setdefault("error", str(error))
        data.setdefault("exit_code", int(getattr(error, "exit_code", 2)))
    return data


def _details(summary: str, lines: Sequence[str]) -> list[str]:
    """Return a collapsed block of verbatim lines (fenced so that backticks inside cannot close it)."""
    fence = _fence(lines)
    return [f"<details><summary>{summary}</summary>", "", f"{fence}text", *lines, fence, "", "</details>", ""]


def annotation_lines(result: Any, *, error: Any = None) -> list[str]:
    """Return the annotation lines for an attempt: one ``::error`` unless it succeeded."""
    data = _attempt(result, error)
    code = int(data.get("exit_code", 0))
    if code == 0:
        return []
    message = masking.mask(str(data.get("error") or data.get("message") or "failed"))
    level = "notice" if code == 1 else "error"
    return [annotation(level, message, title=_title(data))]


def summary_markdown(result: Any, *, error: Any = None) -> str:
    """Return the step summary of an attempt: outcome, phases and timings, revisions, journal excerpt."""
    data = _attempt(result, error)
    record: Mapping[str, Any] = data.get("record") or {}
    plan: Mapping[str, Any] = data.get("plan") or {}
    code = int(data.get("exit_code", 0))
    mark = "✅" if code == 0 else ("ℹ️" if code == 1 else "❌")
    out = [f"### {mark} {_title(data)} (exit {code})", ""]
    message = masking.mask(str(data.get("error") or data.get("message") or ""))
    if message:
        out += [f"> {_cell(message)}", ""]

    from_rev = record.get("from_rev") or plan.get("from_rev")
    to_rev = record.get("to_rev") or plan.get("to_rev")
    source = record.get("rollback_source") or plan.get("rollback_source")
    facts = []
    if to_rev or from_rev:
        facts.append(f"| revision {'deployed' if code == 0 else 'attempted'} | {_short(to_rev)} |")
        rollback = _short(from_rev) + (f" (chosen from {_cell(source)})" if source else "")
        facts.append(f"| rollback target | {rollback} |")
    if plan.get("action"):
        facts.append(f"| switch | {_cell(plan['action'])}: {_cell(plan.get('why', ''))} |")
    if record.get("ready_url"):
        facts.append(f"| readiness URL | `{_cell(masking.mask(str(record['ready_url'])))}` |")
    if record.get("time"):
        facts.append(f"| started | {_cell(record['time'])} |")
    if facts:
        out += ["| | |", "|---|---|", *facts, ""]

    phases: Sequence[Mapping[str, Any]] = record.get("phases") or []
    if phases:
        total = sum(float(p.get("seconds", 0)) for p in phases)
        out += ["| phase | seconds | result | detail |", "|---|---:|---|---|"]
        for p in phases:
            ok = "ok" if p.get("ok", True) else "**FAILED**"
            detail = _cell(masking.mask(str(p.get("detail", ""))))
            out.append(f"| {_cell(p.get('name', '?'))} | {float(p.get('seconds', 0)):.2f} | {ok} | {detail} |")
        out += [f"| **total** | **{total:.2f}** | | |", ""]

    journal = [masking.mask(str(line)) for line in (record.get("journal") or [])][-JOURNAL_LINES:]
    if journal:
        out += _details(f"journal of {_cell(data.get('unit', 'the unit'))} (last {len(journal)} lines)", journal)
    output = masking.mask(str(record.get("output") or "")).strip()
    if output and code != 0:
        out += _details("output of the failed check", output.splitlines()[-JOURNAL_LINES:])
    return "\n".join(out) + "\n"


def emit(
    result: Any = None,
    *,
    error: Any = None,
    env: Mapping[str, str] | None = None,
    stream: IO[str] | None = None,
) -> bool:
    """In GitHub Actions, print the annotations and append the step summary; return whether it did."""
    env = os.environ if env is None else env
    if not in_actions(env):
        return False
    stream = sys.stderr if stream is None else stream
    for line in annotation_lines(result, error=error):
        stream.write(line + "\n")
    stream.flush()
    path = env.get("GITHUB_STEP_SUMMARY", "")
    if path:
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(summary_markdown(result, error=error) + "\n")
        except OSError as exc:
            stream.write(f"unitctl: warning: cannot append to GITHUB_STEP_SUMMARY {path}: {exc.strerror}\n")
    return True


def emit_error(
    error: Any,
    *,
    unit: str | None,
    command: str = "apply",
    env: Mapping[str, str] | None = None,
    stream: IO[str] | None = None,
) -> bool:
    """Report an error that ended the command before any attempt was recorded (usage, lock held)."""
    data = {"unit": unit, "command": command, "exit_code": int(getattr(error, "exit_code", 2)), "error": str(error)}
    return emit(data, env=env, stream=stream)


__all__ = ["annotation", "annotation_lines", "emit", "emit_error", "escape_data", "escape_property", "summary_markdown"]
