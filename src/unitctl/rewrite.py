"""Rewrite a Gunicorn unit's workers and preload with the fewest byte changes; build the equivalent drop-in.

Pure: text in, text out. Everything not asked for keeps its exact bytes: other lines, other ExecStart= commands,
other words with their quoting, continuation lines and comments inside them. Only the value part of the winning
workers option changes (``-w4`` → ``-w5``, ``--workers=9`` → ``--workers=5``, ``-w 9`` → ``-w 5``); without one,
`` --workers N`` goes right after the gunicorn executable (or ``-m gunicorn``); every preload option (``--pre``
abbreviations too) leaves with the whitespace that separated it, in the command line, in a simple ``sh -c``
script, and in ``GUNICORN_CMD_ARGS`` of ``Environment=``.

After the edits the result is read back: the Gunicorn arguments must be exactly the expected ones and the effective
workers/preload the requested ones, or the rewrite is refused (never a silently wrong unit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from unitctl import execline
from unitctl.errors import RefusedError, UnitctlError
from unitctl.gunicorn import (
    Found,
    GunicornArgs,
    ReadFile,
    Settings,
    effective_settings,
    find_gunicorn,
    parse_args,
    resolve_workers,
    shlex_words,
    unit_environment,
)
from unitctl.placeholders import check_not_template
from unitctl.unitfile import Edit, Entry, UnitFile

__all__ = ["RewriteError", "RewriteResult", "RewriteSpec", "dropin_for", "rewrite_unit"]


class RewriteError(RefusedError):
    """The rewrite would not give the requested result exactly; nothing is written."""


@dataclass(frozen=True)
class RewriteSpec:
    """What a rewrite asks for: a worker count (N or 'auto' = 2 x cpu_count + 1, capped), no preload."""

    workers: int | str | None = None
    max_workers: int | None = None
    no_preload: bool = False
    cpu_count: int | None = None
    # With no_preload: refuse when preload stays on all the same (a gunicorn.conf.py or GUNICORN_CMD_ARGS sets it).
    strict: bool = False


@dataclass(frozen=True)
class RewriteResult:
    """The new text, what changed (for humans), and what could not be changed from the unit."""

    text: str
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    preload_kept: str = ""  # with no_preload: where preload stays on all the same (a config file), "" when off

    @property
    def changed(self) -> bool:
        """Return True when the rewrite changed anything."""
        return bool(self.changes)


# -- word layers: where each argv word sits in the text that is edited ------------------------------------------


@dataclass(frozen=True)
class _Word:
    value: str
    start: int
    end: int
    charmap: tuple[int, ...] | None  # text index of value[i]; [len] = just after the last char; None: escapes


def _value_map(text: str, start: int, end: int, value: str) -> tuple[int, ...] | None:
    """Map each character of a systemd word's value to its index in text (None when escapes are involved)."""
    out: list[int] = []
    quote = ""
    last = start
    i = start
    while i < end:
        c = text[i]
        if c == "\\":
            return None
        if quote:
            if c == quote:
                quote = ""
            else:
                out.append(i)
                last = i + 1
        elif c in "'\"":
            quote = c
            last = i + 1
        else:
            out.append(i)
            last = i + 1
        i += 1
    if "".join(text[j] for j in out) != value:
        return None
    out.append(out[-1] + 1 if out else last)
    return tuple(out)


@dataclass
class _Ops:
    """Edits in one text (an ExecStart value, a shell script, a GUNICORN_CMD_ARGS string)."""

    words: list[_Word]
    edits: list[tuple[int, int, str]] = field(default_factory=list)


def _replace_tail(ops: _Ops, k: int, value_start: int, new: str, requote: Callable[[str], str]) -> None:
    """Replace word k's value from value_start to its end with new (digits), keeping quotes where possible."""
    w = ops.words[k]
    if w.charmap is not None:
        ops.edits.append((w.charmap[value_start], w.charmap[len(w.value)], new))
    else:
        ops.edits.append((w.start, w.end, requote(w.value[:value_start] + new)))


def _runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i in sorted(set(indices)):
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _removal_candidates(words: Sequence[_Word], i: int, j: int) -> list[tuple[int, int]]:
    """Ranges that remove words i..j with the whitespace that separated them, best first."""
    out = []
    # Up to the next word first: a word alone on its continuation line takes that line with it.
    if j + 1 < len(words):
        out.append((words[i].start, words[j + 1].start))
    if i > 0:
        out.append((words[i - 1].end, words[j].end))
    out.append((words[i].start, words[j].end))
    return out


def _comment_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()[:1] in ("#", ";")]


def _keeps_comments(entry: Entry, start: int, end: int) -> bool:
    """Return True when removing entry.value[start:end] keeps every comment line inside the entry."""
    if "#" not in entry.raw and ";" not in entry.raw:
        return True
    scratch = UnitFile.parse(f"[{entry.section}]\n" + entry.raw)
    e = scratch.entries(entry.section, entry.key)[0]
    try:
        scratch.edit_value(e, [Edit(start, end, "")])
    except (UnitctlError, ValueError):
        return False
    return _comment_lines(scratch.serialize()) == _comment_lines(entry.raw)


def _remove_words(ops: _Ops, indices: Sequence[int], entry: Entry | None = None) -> None:
    for i, j in _runs(indices):
        for s, e in _removal_candidates(ops.words, i, j):
            if entry is None or _keeps_comments(entry, s, e):
                ops.edits.append((s, e, ""))
                break
        else:
            # Comment lines between the words of the run: take each word alone and leave the whitespace.
            ops.edits.extend((ops.words[k].start, ops.words[k].end, "") for k in range(i, j + 1))


def _apply(text: str, edits: Sequence[tuple[int, int, str]]) -> str:
    for s, e, r in sorted(edits, key=lambda x: (x[0], x[1]), reverse=True):
        text = text[:s] + r + text[e:]
    return text


# -- the rewrite ------------------------------------------------------------------------------------------------


def _expected_args(args: GunicornArgs, *, new_workers: str | None, drop_preload: bool) -> list[str]:
    """The Gunicorn arguments the rewrite must produce, computed on words rather than bytes."""
    argv = list(args.argv)
    last = args.last("workers")
    if new_workers is not None and last is not None:
        assert last.value_index is not None and last.value_start is not None
        argv[last.value_index] = argv[last.value_index][: last.value_start] + new_workers
    drop = {u.index for u in args.uses_of("preload_app")} if drop_preload else set()
    out = [a for k, a in enumerate(argv) if k >= args.start and k not in drop]
    if new_workers is not None and last is None:
        out = ["--workers", new_workers, *out]  # inserted right after the executable
    return out


def _plan_args(
    found: Found, *, new_workers: str | None, drop_preload: bool
) -> tuple[list[Edit], list[str], Callable[[UnitFile], GunicornArgs]]:
    """Plan the edits of the ExecStart= value; return (edits, expected argv, reader of the new argv)."""
    inv = found.invocation
    entry, cmd = found.entry, found.command
    args = inv.args
    last = args.last("workers")
    replace_workers = new_workers is not None and last is not None and last.value != new_workers
    insert_workers = new_workers is not None and last is None
    preload_idx = [u.index for u in args.uses_of("preload_app")] if drop_preload else []

    if inv.shell is None:
        # The command's own words; argv index i is cmd word i (i + 1 after argv0 when the prefix has '@').
        cwords = [_Word(w.value, w.start, w.end, _value_map(entry.value, w.start, w.end, w.value)) for w in cmd.words]

        def cw(i: int) -> int:
            return i + 1 if (cmd.separate_argv0 and i > 0) else i

        ops = _Ops(cwords)
        if replace_workers:
            assert last is not None and last.value_index is not None and last.value_start is not None
            _replace_tail(ops, cw(last.value_index), last.value_start, str(new_workers), execline.quote)
        if preload_idx:
            _remove_words(ops, [cw(i) for i in preload_idx], entry)
        if insert_workers:
            at = cw(inv.exe_index) + (1 if cmd.separate_argv0 and inv.exe_index == 0 else 0)
            ops.edits.append((cwords[at].end, cwords[at].end, f" --workers {new_workers}"))
        edits = [Edit(s, e, r) for s, e, r in ops.edits]
    else:
        sh = inv.shell
        swords = [_Word(w.value, w.start, w.end, w.charmap) for w in sh.words]
        ops = _Ops(swords)
        if replace_workers:
            assert last is not None and last.value_index is not None and last.value_start is not None
            _replace_tail(ops, last.value_index, last.value_start, str(new_workers), _sh_quote)
        if preload_idx:
            _remove_words(ops, preload_idx)
        if insert_workers:
            ops.edits.append((swords[inv.exe_index].end, swords[inv.exe_index].end, f" --workers {new_workers}"))
        new_script = _apply(sh.text, ops.edits)
        sysword = found.words[sh.index]
        k = cmd.words.index(sysword)
        w = cmd.words[k]
        cmap = _value_map(entry.value, w.start, w.end, w.value)
        if cmap is not None and ops.edits:
            edits = [Edit(cmap[s], cmap[e], r) for s, e, r in ops.edits]
        elif ops.edits:
            edits = [Edit(w.start, w.end, execline.quote(new_script))]
        else:
            edits = []

    expected = _expected_args(args, new_workers=new_workers, drop_preload=drop_preload)

    def reader(uf: UnitFile) -> GunicornArgs:
        return find_gunicorn(uf).invocation.args

    return edits, expected, reader


_REWRITTEN = ("workers", "preload_app")


def _same_meaning(old: GunicornArgs, new: GunicornArgs, *, line: int) -> None:
    """Refuse when removing or inserting words changed how Gunicorn reads the other options or the app."""
    before = {k: v for k, v in old.values.items() if k not in _REWRITTEN}
    after = {k: v for k, v in new.values.items() if k not in _REWRITTEN}
    if before != after or old.app != new.app:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        if old.app != new.app:
            changed.append(f"APP_MODULE ({old.app!r} → {new.app!r})")
        raise RewriteError(
            f"ExecStart= (line {line}): the rewrite would change how Gunicorn reads {', '.join(changed)}",
            hint="give options with an optional value (--proxy-protocol) their value explicitly, then retry",
        )


def _sh_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def _drop_preload_from_env(uf: UnitFile, changes: list[str]) -> list[str] | None:
    """Remove preload from GUNICORN_CMD_ARGS in Environment=; return the expected new argv (None: untouched)."""
    env, _ = unit_environment(uf)
    if "GUNICORN_CMD_ARGS" not in env:
        return None
    value, entry, k = env["GUNICORN_CMD_ARGS"]
    try:
        swords = shlex_words(value)
    except ValueError:
        return None  # effective_settings already refused it
    env_args = parse_args([w.value for w in swords], where="GUNICORN_CMD_ARGS")
    idx = [u.index for u in env_args.uses_of("preload_app")]
    if not idx:
        return None
    ops = _Ops([_Word(w.value, w.start, w.end, w.charmap) for w in swords])
    _remove_words(ops, idx)
    new_value = _apply(value, ops.edits)
    expected = [w.value for n, w in enumerate(swords) if n not in idx]
    words = execline.environment_words(entry.value)
    w = words[k]
    prefix = len("GUNICORN_CMD_ARGS=")
    if not expected:
        # Nothing left: drop the assignment (an empty Environment= would reset the list, so drop the line instead).
        if len(words) == 1:
            uf.remove_entry(entry)
        else:
            wl = [_Word(x.value, x.start, x.end, None) for x in words]
            s, e = _removal_candidates(wl, k, k)[0]  # never the bare-word fallback: there are other words
            uf.edit_value(entry, [Edit(s, e, "")])
        changes.append(f"preload removed from GUNICORN_CMD_ARGS in Environment= (line {entry.line})")
        return expected
    cmap = _value_map(entry.value, w.start, w.end, w.value)
    if cmap is not None:
        edits = [Edit(cmap[prefix + s], cmap[prefix + e], r) for s, e, r in ops.edits]
    else:
        edits = [Edit(w.start, w.end, execline.quote("GUNICORN_CMD_ARGS=" + new_value))]
    uf.edit_value(entry, edits)
    changes.append(f"preload removed from GUNICORN_CMD_ARGS in Environment= (line {entry.line})")
    return expected


def rewrite_unit(
    text: str,
    spec: RewriteSpec,
    *,
    read_file: ReadFile | None = None,
    path: str | None = None,
) -> RewriteResult:
    """Make the rewrite ``spec`` asks for (workers and/or no preload) with the fewest byte changes.

    ``read_file(path) -> text | None`` lets the rewrite look into the Gunicorn config file and EnvironmentFile=
    (they cannot be changed from the unit: settings there become warnings); without it they are not read.
    """
    workers, no_preload, max_workers, cpu_count = spec.workers, spec.no_preload, spec.max_workers, spec.cpu_count
    check_not_template(text, path=path)
    uf = UnitFile.parse(text, path=path)
    found = find_gunicorn(uf)
    before = effective_settings(uf, read_file=read_file, invocation=(found.entry, found.invocation))
    # What the unit cannot show (config file, EnvironmentFile=) matters only for preload: workers set on the
    # command line beats both.
    warnings = list(before.warnings) if no_preload else []
    changes: list[str] = []
    target: int | None = None
    if workers is not None or max_workers is not None:
        target = resolve_workers(workers, cpu_count=cpu_count, max_workers=max_workers)
    last = found.invocation.args.last("workers")
    new_workers = str(target) if target is not None and (last is None or last.value != str(target)) else None
    drop_preload = no_preload and bool(found.invocation.args.uses_of("preload_app"))

    if new_workers is not None or drop_preload:
        edits, expected, reader = _plan_args(found, new_workers=new_workers, drop_preload=drop_preload)
        if edits:
            uf.edit_value(found.entry, edits)
        new_args = reader(uf)
        got = list(new_args.argv[new_args.start :])
        if got != expected:
            raise RewriteError(
                f"ExecStart= (line {found.entry.line}): the rewrite would give Gunicorn {got!r}, not {expected!r}",
                hint="simplify the command line and retry",
            )
        _same_meaning(found.invocation.args, new_args, line=found.entry.line)
        if new_workers is not None:
            old = before.workers
            shown = old.value if old.source == "command line" else f"{old.value} ({old.source})"
            changes.append(f"workers {shown} → {new_workers}")
        if drop_preload:
            changes.append("preload removed")

    env_expected: list[str] | None = None
    if no_preload:
        env_expected = _drop_preload_from_env(uf, changes)

    after = effective_settings(uf, read_file=read_file)
    if target is not None and after.workers.value != target:  # pragma: no cover - the command line always wins
        raise RewriteError(f"workers would be {after.workers.value} ({after.workers.source}), not {target}")
    if env_expected is not None:
        env, _ = unit_environment(uf)
        now = [w.value for w in shlex_words(env["GUNICORN_CMD_ARGS"][0])] if "GUNICORN_CMD_ARGS" in env else []
        if now != env_expected:
            raise RewriteError(
                f"GUNICORN_CMD_ARGS would read {now!r} instead of {env_expected!r}",
                hint="write GUNICORN_CMD_ARGS without escapes and retry",
            )
    preload_kept = _preload_left_on(after, spec=spec, path=path, warnings=warnings)
    new_text = uf.serialize()
    if not changes:
        assert new_text == text
    return RewriteResult(new_text, changes, list(dict.fromkeys(warnings)), preload_kept)


def _preload_left_on(after: Settings, *, spec: RewriteSpec, path: str | None, warnings: list[str]) -> str:
    """Return where preload stays on after a --no-preload rewrite ("" if off), warning about it; refuse if strict."""
    if not spec.no_preload or after.preload.value is False:
        return ""
    src = after.preload.source
    preload_kept = src.removeprefix("config file ").removesuffix(" (computed)")
    if src.startswith("config file"):
        warnings.append(
            f"{preload_kept} sets preload_app; Gunicorn has no --no-preload to override it from the unit: remove "
            "preload_app from that file"
        )
    elif src == "GUNICORN_CMD_ARGS":
        warnings.append(
            "GUNICORN_CMD_ARGS from an EnvironmentFile= turns on --preload; unitctl does not edit that file: "
            "remove --preload there"
        )
    else:  # pragma: no cover - the command line and Environment= were both rewritten above
        raise RewriteError(f"preload would stay on ({src})")
    if spec.strict:
        raise RefusedError(
            f"{path or 'the unit'}: --no-preload was asked, but preload stays on: {preload_kept} sets it",
            hint="remove preload_app (or --preload) there; nothing was written",
        )
    return preload_kept


def dropin_for(
    text: str,
    spec: RewriteSpec,
    *,
    read_file: ReadFile | None = None,
    path: str | None = None,
) -> RewriteResult:
    """Return an override drop-in (``[Service]`` / ``ExecStart=`` / ``ExecStart=<new>``) that makes the rewrite.

    ``text`` is the unit as systemd merges it for the service (or its main file); the result's text is empty
    when nothing needs to change.
    """
    result = rewrite_unit(text, spec, read_file=read_file, path=path)
    if not result.changes:
        return RewriteResult("", [], result.warnings, result.preload_kept)
    uf = UnitFile.parse(result.text, path=path)  # parse() is lossless: the rewritten unit, read back
    found = find_gunicorn(uf)
    value, cmd = found.entry.value, found.command
    # One line: the prefixes and every word exactly as written, continuation gaps collapsed to one space.
    line = value[cmd.start : cmd.words[0].start] + " ".join(value[w.start : w.end] for w in cmd.words)
    out = ["[Service]", "ExecStart=", f"ExecStart={line}"]
    env, _ = unit_environment(uf)
    original_env, _ = unit_environment(UnitFile.parse(text, path=path))
    if "GUNICORN_CMD_ARGS" in original_env:
        new_args = env["GUNICORN_CMD_ARGS"][0] if "GUNICORN_CMD_ARGS" in env else ""
        if new_args != original_env["GUNICORN_CMD_ARGS"][0]:
            out.append("Environment=" + execline.quote("GUNICORN_CMD_ARGS=" + new_args))
    return RewriteResult("\n".join(out) + "\n", result.changes, result.warnings, result.preload_kept)
