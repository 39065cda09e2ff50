"""Unified diff of two unit texts with secrets masked, a one-line semantic summary, and colour.

Pure: texts in, lines and strings out. Secrets are masked in both sides before diffing, so a
diff never prints a password; whether the units differ is decided on the real texts, so a
changed secret still makes ``unitctl diff`` exit 1 ("secret values differ").
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from unitctl import execline, masking
from unitctl.execline import ExecSyntaxError
from unitctl.output import style
from unitctl.rewrite import RewriteSpec


@dataclass(frozen=True)
class UnitDiff:
    """The result of comparing an installed unit with the desired one."""

    differs: bool
    lines: tuple[str, ...]  # unified diff of the masked texts, each ending in "\n"
    summary: str

    @property
    def secrets_only(self) -> bool:
        """True when the units differ only inside masked secret values."""
        return self.differs and not self.lines


def unified(old: str, new: str, *, old_name: str, new_name: str, context: int = 3) -> list[str]:
    """Return the unified diff lines of ``old`` → ``new`` (every line ends with a newline)."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=old_name,
        tofile=new_name,
        n=context,
    )
    result = []
    for line in lines:
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        result.append(line)
    return result


def compare(old: str, new: str, *, old_name: str, new_name: str, summary: str = "") -> UnitDiff:
    """Diff two unit texts with secrets masked on both sides."""
    differs = old != new
    lines = unified(masking.mask_unit_text(old), masking.mask_unit_text(new), old_name=old_name, new_name=new_name)
    if differs and not lines and not summary:
        summary = "secret values differ (masked)"
    elif differs and not summary:
        summary = "unit differs"
    elif not differs:
        summary = "no changes"
    return UnitDiff(differs=differs, lines=tuple(lines), summary=masking.mask(summary))


def colourize(lines: Iterable[str], enabled: bool) -> list[str]:
    """Colour diff lines: headers bold, hunks cyan, removals red, additions green."""
    out = []
    for line in lines:
        body = line.rstrip("\n")
        end = line[len(body) :]
        if line.startswith(("---", "+++")):
            out.append(style(body, "bold", enabled) + end)
        elif line.startswith("@@"):
            out.append(style(body, "cyan", enabled) + end)
        elif line.startswith("-"):
            out.append(style(body, "red", enabled) + end)
        elif line.startswith("+"):
            out.append(style(body, "green", enabled) + end)
        else:
            out.append(line)
    return out


def join_summary(parts: Sequence[str]) -> str:
    """Join semantic changes into the one-line summary."""
    return ", ".join(p for p in parts if p)


# -- the installed unit against the desired one ------------------------------------------------------

# Service settings worth naming in the summary (values shown unless secret).
_SUMMARY_KEYS = (
    ("Unit", "Requires"),
    ("Service", "Type"),
    ("Service", "User"),
    ("Service", "Group"),
    ("Service", "WorkingDirectory"),
    ("Service", "KillMode"),
    ("Service", "TimeoutStopSec"),
    ("Service", "RuntimeDirectory"),
    ("Service", "ExecReload"),
)


def cat_text(files: Sequence[tuple[str | None, str]]) -> str:
    """Return the unit as ``systemctl cat`` shows it: each file's text under a ``# PATH`` line."""
    parts = []
    for path, text in files:
        body = text if text.endswith("\n") or not text else text + "\n"
        parts.append(f"# {path or '<unit>'}\n{body}")
    return "\n".join(parts)


def _env_names(values: Sequence[str]) -> dict[str, str]:
    """Map variable name → value for the Environment= assignments systemd keeps."""
    result: dict[str, str] = {}
    for value in values:
        try:
            assignments = execline.environment_assignments(value)
        except ExecSyntaxError:
            continue  # systemd ignores the line
        for name, val, _ in assignments:
            result[name] = val
    return result


def summarize_units(old: Any, new: Any) -> str:
    """Return the one-line semantic summary of installed → desired (MergedUnit-like views)."""
    parts: list[str] = []
    parts += _gunicorn_changes(old, new)
    for section, key in _SUMMARY_KEYS:
        a, b = old.get(section, key), new.get(section, key)
        if a != b:
            parts.append(f"{key} {a or '(unset)'} → {b or '(unset)'}")
    old_env = _env_names(old.values("Service", "Environment"))
    new_env = _env_names(new.values("Service", "Environment"))
    added = sorted(set(new_env) - set(old_env))
    removed = sorted(set(old_env) - set(new_env))
    changed = sorted(k for k in set(old_env) & set(new_env) if old_env[k] != new_env[k])
    if added:
        parts.append(f"Environment {', '.join(added)} added")
    if removed:
        parts.append(f"Environment {', '.join(removed)} removed")
    if changed:
        parts.append(f"Environment {', '.join(changed)} changed")
    if old.values("Service", "EnvironmentFile") != new.values("Service", "EnvironmentFile"):
        parts.append("EnvironmentFile changed")
    if not parts:
        before, after = _effective(old), _effective(new)
        changed_keys = sorted({k for k in before.keys() | after.keys() if before.get(k) != after.get(k)})
        if not changed_keys:
            return "no effective change (comments or layout only, or a drop-in overrides the edit)"
        parts.append(", ".join(f"{key}" for _, key in changed_keys) + " changed")
    return join_summary(parts)


# Keys whose assignments accumulate (an empty one resets); every other key: the last assignment wins.
_LIST_KEYS = frozenset(
    "ExecCondition ExecStartPre ExecStart ExecStartPost ExecReload ExecStop ExecStopPost Environment "
    "EnvironmentFile PassEnvironment UnsetEnvironment After Before Requires Requisite Wants BindsTo PartOf "
    "Upholds Conflicts OnFailure OnSuccess WantedBy RequiredBy UpheldBy Also Alias Documentation ListenStream "
    "ListenDatagram ListenSequentialPacket ReadWritePaths ReadOnlyPaths InaccessiblePaths BindPaths "
    "BindReadOnlyPaths RuntimeDirectory StateDirectory CacheDirectory LogsDirectory ConfigurationDirectory "
    "SupplementaryGroups LoadCredential SetCredential".split()
)


def _effective(unit: Any) -> dict[tuple[str, str], list[str] | str | None]:
    """Return every (section, key) with what systemd ends up with."""
    return {
        (e.section, e.key): unit.values(e.section, e.key) if e.key in _LIST_KEYS else unit.get(e.section, e.key)
        for e in unit.all_entries()
    }


def _gunicorn_changes(old: Any, new: Any) -> list[str]:
    """Name what changes in Gunicorn's effective settings (workers, preload, app, binds)."""
    from unitctl.errors import UnitctlError
    from unitctl.gunicorn import effective_settings

    def settings(unit: Any) -> Any:
        try:
            # MergedUnit reads like a UnitFile (entries/values/get across main file and drop-ins).
            return effective_settings(unit)
        except UnitctlError:
            return None  # not a (readable) Gunicorn unit: the key-level summary still applies

    a, b = settings(old), settings(new)
    if a is None and b is None:
        return []
    if a is None or b is None:
        return ["Gunicorn added" if a is None else "Gunicorn removed"]
    parts = []
    if a.workers.value != b.workers.value:
        parts.append(f"workers {_show(a.workers.value)} → {_show(b.workers.value)}")
    if a.preload.value != b.preload.value:
        parts.append("preload removed" if a.preload.value else "preload added")
    if a.app.value != b.app.value:
        parts.append(f"app {_show(a.app.value)} → {_show(b.app.value)}")
    if tuple(a.binds.value) != tuple(b.binds.value):
        parts.append(f"bind {' '.join(a.binds.value) or '(none)'} → {' '.join(b.binds.value) or '(none)'}")
    return parts


def _show(value: object) -> str:
    return "(unknown)" if value is None else str(value)


def diff_installed(
    *,
    name: str,
    root: str = "/",
    unit_file: str | None = None,
    rendered: str | None = None,
    rewrite: RewriteSpec | None = None,
) -> UnitDiff:
    """Compare the installed unit NAME (with its drop-ins, under ``root``) with the desired one."""
    from pathlib import Path

    from unitctl.errors import InputError, UsageError
    from unitctl.unitfile import UnitFile, load_unit, merged
    from unitctl.unitname import validate_unit_name

    unit_name = validate_unit_name(name)
    chosen = [x for x in (unit_file, rendered, rewrite) if x is not None]
    if len(chosen) != 1:
        raise UsageError(
            "say what the unit should become: exactly one of --unit-file FILE, --render (with render "
            "options) or --workers/--no-preload",
            hint="e.g. unitctl diff myapp --workers 5 --no-preload",
        )
    if not Path(root).is_dir():
        raise InputError(f"--root {root}: no such directory", hint="give the root of the system to compare with")
    installed = load_unit(unit_name, root=root)
    main = installed.main
    files = [(f.path, f.serialize()) for f in installed.files]
    if unit_file is not None:
        from unitctl.fsutil import read_unit_bytes

        data = read_unit_bytes(Path(unit_file), hint="check the --unit-file path")
        new_main = data.decode("utf-8", "surrogateescape")
        new_files = [(main.path, new_main), *files[1:]]
    elif rendered is not None:
        new_files = [(main.path, rendered), *files[1:]]
    else:
        assert rewrite is not None
        from unitctl.gunicorn import find_gunicorn
        from unitctl.placeholders import check_not_template

        for path, text in files:
            check_not_template(text, path=path)
        # Rewrite the file whose ExecStart= systemd runs: the main file, or the drop-in that replaced it.
        holder = find_gunicorn(installed).entry.path
        new_files = [(path, _rewritten(text, rewrite) if path == holder else text) for path, text in files]
    desired = merged(
        UnitFile.parse(new_files[0][1], path=main.path),
        [UnitFile.parse(text, path=path) for path, text in new_files[1:]],
    )
    old_cat, new_cat = cat_text(files), cat_text(new_files)
    label = main.path or unit_name
    summary = summarize_units(installed, desired) if old_cat != new_cat else ""
    return compare(old_cat, new_cat, old_name=f"{label} (installed)", new_name=f"{label} (desired)", summary=summary)


def _rewritten(text: str, spec: RewriteSpec) -> str:
    """Apply the workers / no-preload rewrite to the installed unit's text (as ``apply`` does)."""
    from unitctl.desired import rewrite_text

    return rewrite_text(text, spec)[0]
