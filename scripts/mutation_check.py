#!/usr/bin/env python3
"""Measure how many hand-made mutants of unitctl's pure core the unit tests kill (docs/testing.md).

A measurement, not part of the test command. Each mutant replaces one exact source snippet (a comparison flipped,
``is not`` turned into ``is``, a list entry dropped, an off-by-one, a branch swapped) in a temporary copy of the
tree, never in the working tree, and runs the unit tests mapped to its module with ``pytest -x``. A mutant is
killed when they fail, survives when they pass, and is "stale" when its snippet is not found exactly once in its
module's files (the code moved or changed: re-point MODULES or rewrite the mutant; a stale mutant is never
silently skipped and makes the check fail). Exit 1 below --min-ratio (90%) or with a stale mutant, 0 otherwise.

    .venv/bin/python scripts/mutation_check.py               # every mutant, a table per module
    .venv/bin/python scripts/mutation_check.py -m masking    # one module
    .venv/bin/python scripts/mutation_check.py --list        # the mutants, without running anything
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Module:
    """Where a module's source lives (globs, so a file that moves into a package is still found) and its tests."""

    sources: tuple[str, ...]
    tests: tuple[str, ...]


# By module name, not by file: after a move (gunicorn.py -> gunicorn/, the worker rules -> one module) only the
# globs change. A snippet must occur exactly once across a module's files.
MODULES: dict[str, Module] = {
    "unitfile": Module(
        ("src/unitctl/unitfile.py", "src/unitctl/unitname.py"),  # unit names left unitfile.py for unitname.py
        ("tests/unit/test_unitfile.py", "tests/unit/test_unit_names.py"),
    ),
    "execline": Module(("src/unitctl/execline.py",), ("tests/unit/test_execline.py",)),
    "gunicorn": Module(
        ("src/unitctl/gunicorn/*.py",),
        # test_masking reads EnvironmentFile= syntax through parse_env_file
        (
            "tests/unit/test_gunicorn.py",
            "tests/unit/test_workers.py",
            "tests/unit/test_rewrite.py",
            "tests/unit/test_cli_units.py",
            "tests/unit/test_masking.py",
        ),
    ),
    "rewrite": Module(
        ("src/unitctl/rewrite.py",),
        ("tests/unit/test_rewrite.py", "tests/unit/test_golden.py", "tests/unit/test_cli_units.py"),
    ),
    "plan": Module(
        ("src/unitctl/deploy/model.py",),
        ("tests/unit/test_apply_plan.py", "tests/unit/test_apply_engine.py", "tests/unit/test_apply_fake.py"),
    ),
    "history": Module(("src/unitctl/history.py",), ("tests/unit/test_history.py", "tests/unit/test_apply_fake.py")),
    "masking": Module(("src/unitctl/masking.py",), ("tests/unit/test_masking.py", "tests/unit/test_history.py")),
}


@dataclass(frozen=True)
class Mutant:
    """One hand-made fault: ``snippet`` (exact source text) becomes ``replacement`` in one of ``module``'s files."""

    module: str
    snippet: str
    replacement: str
    why: str


M = Mutant
# Left out as equivalent (no input tells them apart, so no test can kill them): in make_plan, dropping
# "installed is not None" from the stale check (no installed unit is always a unit change, which wins) and
# "and state.is_active" from running_unrecorded (an inactive service is always restarted first); in rewrite,
# dropping "or old.app != new.app" from _same_meaning (no edit plan touches the app, the check is a safety net).
MUTANTS: list[Mutant] = [
    # -- unitfile: the lossless unit model ---------------------------------------------------------------------
    M(
        "unitfile",
        '    return (len(content) - len(content.rstrip("\\\\"))) % 2 == 1',
        '    return (len(content) - len(content.rstrip("\\\\"))) % 2 == 0',
        "an even run of backslashes continues",
    ),
    M("unitfile", '            if s[-1] != "]":', '            if s[-1] == "]":', "a section header without ']'"),
    M("unitfile", "        if eq == 0:", "        if eq == 1:", "an assignment with an empty key"),
    M("unitfile", "        if dash <= 0:", "        if dash < 0:", "drop-in lookup of a name starting with '-'"),
    M(
        "unitfile",
        "if base not in best or rank[d] < best[base][0]:",
        "if base not in best or rank[d] > best[base][0]:",
        "the lower-ranked drop-in directory wins",
    ),
    M(
        "unitfile",
        "if m is None or len(name) > MAX_LENGTH:",
        "if m is None or len(name) > MAX_LENGTH + 1:",
        "a 256-character unit name",
    ),
    M(
        "unitfile",
        "        if pos > 0:\n            self._ensure_eol(pos - 1, eol)",
        "        if pos > 1:\n            self._ensure_eol(pos - 1, eol)",
        "no newline before an entry added at line 2",
    ),
    M(
        "unitfile",
        'elif not (e.section == "Unit" and e.key in _DEPENDENCY_KEYS):',
        'elif (e.section == "Unit" and e.key in _DEPENDENCY_KEYS):',
        "dependency keys treated as the others",
    ),
    # -- execline: systemd's Exec*= splitting --------------------------------------------------------------------
    M(
        "execline",
        'and all(ch in _HEX for ch in h) and h != "00":',
        "and all(ch in _HEX for ch in h):",
        "\\x00 accepted as an escape",
    ),
    M("execline", "if cp == 0 or cp > 0x10FFFF", "if cp == 0 or cp > 0x110000", "a code point past Unicode"),
    M("execline", "            if 0 < v <= 255:", "            if 0 <= v <= 255:", "octal \\000 accepted"),
    M(
        "execline",
        "        return values[1:] if self.separate_argv0 else values",
        "        return values if self.separate_argv0 else values[1:]",
        "argv with and without '@' swapped",
    ),
    M(
        "execline",
        'if "@" in prefixes and len(words) < 2:',
        'if "@" in prefixes and len(words) < 1:',
        "'@' without argv[0]",
    ),
    M(
        "execline",
        'if value[pos] == ";" and (pos + 1 >= n or value[pos + 1] in WHITESPACE):',
        'if value[pos] == ";" and (pos + 1 >= n or value[pos + 1] not in WHITESPACE):',
        "a ';' inside a word splits",
    ),
    M("execline", 'elif ch == "+" and not priv:', 'elif ch == "+":', "'+' after '!' (conflicting prefixes)"),
    M(
        "execline",
        'if arg and arg != ";" and _SAFE_RE.fullmatch(arg):',
        "if arg and _SAFE_RE.fullmatch(arg):",
        "a lone ';' argument left unquoted",
    ),
    M(
        "execline",
        "whole = m.start() == 0 and m.end() == len(word)",
        "whole = m.start() == 0 or m.end() == len(word)",
        "$VAR at the start of a word taken as the whole word",
    ),
    M(
        "execline",
        'return [m.group(0) for m in _SPEC_RE.finditer(text) if m.group(1) != "%"]',
        "return [m.group(0) for m in _SPEC_RE.finditer(text)]",
        "'%%' reported as a specifier",
    ),
    # -- gunicorn: option grammar, workers, effective settings -----------------------------------------------------
    M(
        "gunicorn",
        "if max_workers is not None and workers > max_workers:",
        "if max_workers is not None and workers >= max_workers:",
        "--workers 4 --max-workers 4 refused",
    ),
    M("gunicorn", "    n = 2 * cpu_count + 1\n", "    n = 2 * cpu_count\n", "auto forgets the +1"),
    M(
        "gunicorn",
        "return min(n, max_workers) if max_workers is not None else n",
        "return max(n, max_workers) if max_workers is not None else n",
        "the cap raises the count",
    ),
    M(
        "gunicorn",
        "    if n < 1:\n        raise _bad_workers(value)",
        "    if n < 0:\n        raise _bad_workers(value)",
        "--workers 0 accepted",
    ),
    M(
        "gunicorn",
        "isinstance(max_workers, bool) or max_workers < 1):",
        "isinstance(max_workers, bool) or max_workers < 0):",
        "--max-workers 0 accepted",
    ),
    M("gunicorn", "    if len(positionals) > 1:", "    if len(positionals) > 2:", "two app modules accepted"),
    M(
        "gunicorn",
        "        return found[-1] if found else None",
        "        return found[0] if found else None",
        "the first -w wins instead of the last",
    ),
    M(
        "gunicorn",
        'self.trailing = self.trailing + 1 if c in " \\t" else 0',
        "self.trailing = 0",
        "EnvironmentFile= values keep trailing blanks",
    ),
    M(
        "gunicorn",
        'if state in ("single", "double", "double_escape", "value_escape"):',
        'if state in ("double", "double_escape", "value_escape"):',
        "an unclosed single quote drops the value",
    ),
    M(
        "gunicorn",
        'preload = layers.pick("preload_app", False, "default")',
        'preload = layers.pick("preload_app", True, "default")',
        "preload on by default",
    ),
    M(
        "gunicorn",
        'for args, label in ((self.cmd_args, "command line"), (self.env_args, "GUNICORN_CMD_ARGS")):',
        'for args, label in ((self.env_args, "GUNICORN_CMD_ARGS"), (self.cmd_args, "command line")):',
        "GUNICORN_CMD_ARGS beats the command line",
    ),
    M(
        "gunicorn",
        'if setting in self.facts.computed or "*" in self.facts.computed:',
        "if setting in self.facts.computed:",
        "a config file writing through globals()/exec/setattr taken as literal",
    ),
    M(
        "gunicorn",
        '    if not config_path.startswith("/"):\n        config_path = posixpath.normpath',
        '    if config_path.startswith("/"):\n        config_path = posixpath.normpath',
        "a relative -c not resolved against WorkingDirectory=",
    ),
    # -- rewrite: minimal edits of the ExecStart= value -------------------------------------------------------------
    M(
        "rewrite",
        "if not spec.no_preload or after.preload.value is False:",
        "if not spec.no_preload or after.preload.value is not True:",
        "no warning when the config file computes preload_app",
    ),
    M(
        "rewrite",
        "(last is None or last.value != str(target))",
        "(last is not None and last.value != str(target))",
        "--workers not added to a command line without -w",
    ),
    M(
        "rewrite",
        'drop_preload = no_preload and bool(found.invocation.args.uses_of("preload_app"))',
        'drop_preload = bool(found.invocation.args.uses_of("preload_app"))',
        "--preload dropped without --no-preload",
    ),
    M(
        "rewrite",
        '    if "#" not in entry.raw and ";" not in entry.raw:\n        return True',
        '    if "#" not in entry.raw:\n        return True',
        "a ';' comment inside a continuation not kept",
    ),
    M(
        "rewrite",
        "    if i > 0:\n        out.append((words[i - 1].end, words[j].end))",
        "    if i > 1:\n        out.append((words[i - 1].end, words[j].end))",
        "removal span after the second word",
    ),
    M(
        "rewrite",
        "if k >= args.start and k not in drop]",
        "if k > args.start and k not in drop]",
        "the expected argv loses Gunicorn's first argument",
    ),
    M(
        "rewrite",
        "    warnings = list(before.warnings) if no_preload else []",
        "    warnings = list(before.warnings)",
        "workers-only rewrites warn about unread config files",
    ),
    M(
        "rewrite",
        'if new_args != original_env["GUNICORN_CMD_ARGS"][0]:',
        'if new_args == original_env["GUNICORN_CMD_ARGS"][0]:',
        "the drop-in omits a changed GUNICORN_CMD_ARGS",
    ),
    M(
        "rewrite",
        "return i + 1 if (cmd.separate_argv0 and i > 0) else i",
        "return i + 1 if (cmd.separate_argv0 and i >= 0) else i",
        "'@' shifts the executable's index too",
    ),
    # -- plan: the deploy's pure decisions ----------------------------------------------------------------------------
    M(
        "plan",
        "code_changed = given.to_rev is not None and (",
        "code_changed = (",
        "an apply without --repo after a deploy from a repo counts as a code change",
    ),
    M("plan", " or bool(given.tree_reason)\n", "\n", "a torn checkout is not a code change"),
    M(
        "plan",
        "        if switch.running_ready is False:",
        "        if switch.running_ready is not True:",
        "a running release nobody probed (None) restarted as if it did not answer",
    ),
    M(
        "plan",
        '    if unit_restored:\n        return "restart", "the unit file was put back"',
        '    if not unit_restored:\n        return "restart", "the unit file was put back"',
        "the rollback HUPs a master whose unit file it put back",
    ),
    M(
        "plan",
        "first_deploy=given.installed is None if given.first_deploy is None else given.first_deploy,",
        "first_deploy=given.installed is not None if given.first_deploy is None else given.first_deploy,",
        "first deploy inverted",
    ),
    M(
        "plan",
        "daemon_reload=unit_changed or stale or socket_changed,",
        "daemon_reload=unit_changed or socket_changed,",
        "no daemon-reload for a unit systemd has not loaded",
    ),
    M(
        "plan",
        "socket_changed = given.socket_candidate is not None and given.socket_installed != given.socket_candidate",
        "socket_changed = given.socket_installed != given.socket_candidate",
        "no socket candidate removes the .socket",
    ),
    M(
        "plan",
        '    if preload:\n        if strategy == "reload":',
        '    if not preload:\n        if strategy == "reload":',
        "HUP chosen for a preloading Gunicorn",
    ),
    M("plan", "    if not switch.master_alive:\n", "    if switch.master_alive:\n", "HUP sent without a master"),
    M(
        "plan",
        'if not (state.active_state == "active" and state.main_pid > 0):',
        'if not (state.active_state == "active" and state.main_pid >= 0):',
        "rollback HUP with MainPID 0",
    ),
    M(
        "plan",
        "    previous = 2 * previous_ready_seconds if",
        "    previous = 1 * previous_ready_seconds if",
        "the rollback waits only as long as the previous release once took",
    ),
    M(
        "plan",
        "from_rev=given.rollback.rev if given.rollback else given.deployed_rev,",
        "from_rev=given.deployed_rev,",
        "the rollback revision ignored",
    ),
    # -- history: last good / previous good, prune, append ------------------------------------------------------
    M(
        "history",
        "(rec.to_rev, rec.unit_sha256) != (current.to_rev, current.unit_sha256)",
        "rec.to_rev != current.to_rev",
        "previous_good ignores the unit's hash",
    ),
    M("history", 'GOOD_OUTCOMES = ("ok",)', 'GOOD_OUTCOMES = ("ok", "rolled-back")', "a rolled-back deploy as good"),
    M(
        "history",
        "    for rec in reversed(records):\n        if rec.outcome in GOOD_OUTCOMES:\n            return rec",
        "    for rec in records:\n        if rec.outcome in GOOD_OUTCOMES:\n            return rec",
        "the oldest good",
    ),
    M(
        "history",
        "if unit is None or rec.unit == unit:",
        "if unit is None or rec.unit != unit:",
        "read returns the other units",
    ),
    M(
        "history",
        "return [i >= newest or id(r) in needed",
        "return [i > newest or id(r) in needed",
        "prune keeps one record too few",
    ),
    M("history", "    if keep < 1:\n", "    if keep < 0:\n", "prune --keep 0 accepted"),
    M(
        "history",
        "(last_good(records), previous_good(records))",
        "(last_good(records),)",
        "prune drops the rollback target",
    ),
    M(
        "history",
        'if size and os.pread(fd, 1, size - 1) != b"\\n":',
        'if size and os.pread(fd, 1, size - 1) == b"\\n":',
        "a line glued onto a torn one",
    ),
    M(
        "history",
        'if rec.reason and rec.outcome != "ok" else ""',
        'if rec.reason and rec.outcome == "ok" else ""',
        "history shows reasons only for good deploys",
    ),
    # -- masking: what never reaches a log -----------------------------------------------------------------------
    M("masking", '    "SALT",\n', "", "SALT dropped from the secret names"),
    M(
        "masking",
        "        return len(stripped) >= MIN_SECRET_LEN",
        "        return len(stripped) > MIN_SECRET_LEN",
        "a 4-character secret left unmasked",
    ),
    M("masking", "    if stripped.lower() in _BOOLEAN:\n        return False\n", "", "boolean words masked everywhere"),
    M(
        "masking",
        "sorted(values, key=len, reverse=True)",
        "sorted(values, key=len)",
        "a value containing another masked in part",
    ),
    M(
        "masking",
        '    n = len(body) - len(body.rstrip("\\\\"))\n    return n % 2 == 1',
        '    n = len(body) - len(body.rstrip("\\\\"))\n    return n % 2 == 0',
        "continuation lines of a secret not masked",
    ),
    M("masking", "    if not sep or not rest.strip():", "    if not sep:", "an empty credential value masked"),
    M(
        "masking",
        "        after_flag = plain in _GUNICORN_ENV_FLAGS",
        "        after_flag = False",
        "-e NAME=VALUE as two words not masked",
    ),
    M(
        "masking",
        '_GUNICORN_ENV_FLAGS = ("-e", "--env")',
        '_GUNICORN_ENV_FLAGS = ("-e",)',
        "--env NAME=VALUE not masked",
    ),
    M(
        "masking",
        "if len(p) >= MIN_SECRET_LEN)",
        "if len(p) > MIN_SECRET_LEN)",
        "a 4-character URL password not learned",
    ),
    M("masking", " and not _PATH.match(stripped)", "", "absolute paths masked everywhere"),
    M(
        "masking",
        '        if key == "Environment":\n',
        '        if key == "EnvironmentFile":\n',
        "Environment= secrets shown in diff",
    ),
]


@dataclass
class Outcome:
    """What one mutant did: killed / survived / stale, and how long its tests ran."""

    mutant: Mutant
    status: str
    seconds: float = 0.0
    detail: str = ""


def _files(module: Module, root: Path) -> list[Path]:
    return sorted({p for pattern in module.sources for p in root.glob(pattern) if p.is_file()})


def _locate(mutant: Mutant, root: Path) -> tuple[Path | None, str]:
    """Return the one file holding the snippet exactly once, or None and why the mutant is stale."""
    hits = [(p, p.read_text().count(mutant.snippet)) for p in _files(MODULES[mutant.module], root)]
    hits = [(p, n) for p, n in hits if n]
    if not hits:
        return None, "snippet not found"
    if len(hits) > 1 or hits[0][1] > 1:
        return None, "snippet found " + ", ".join(f"{n}x in {p.relative_to(root)}" for p, n in hits)
    return hits[0][0], ""


def _pytest(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int | None, str]:
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0", *tests]
    try:
        run = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    lines = run.stdout.strip().splitlines()
    return run.returncode, lines[-1] if lines else run.stderr.strip()[-200:]


def _copy_tree(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".*_cache", ".hypothesis", "dist", "build")
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    return dest


def run(mutants: list[Mutant], timeout: float) -> list[Outcome]:
    """Apply each mutant to a temporary copy of the tree in turn and run its module's tests."""
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="unitctl-mutants-") as tmp:
        copy = _copy_tree(Path(tmp) / "tree")
        where = subprocess.run(
            [sys.executable, "-c", "import unitctl; print(unitctl.__file__)"],
            env={**os.environ, "PYTHONPATH": str(copy / "src")}, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if not Path(where).is_relative_to(copy):  # the mutants would be tested against the working tree's code
            raise SystemExit(f"mutation_check: the copy's tests import unitctl from {where}, not from {copy}")
        for name in sorted({m.module for m in mutants}):
            code, last = _pytest(copy, MODULES[name].tests, timeout)
            if code != 0:
                raise SystemExit(f"mutation_check: the unmutated tests of {name} do not pass ({last}); fix them first")
        for i, mutant in enumerate(mutants, 1):
            path, why_stale = _locate(mutant, copy)
            if path is None:
                outcomes.append(Outcome(mutant, "stale", detail=why_stale))
            else:
                original = path.read_text()
                path.write_text(original.replace(mutant.snippet, mutant.replacement, 1))
                start = time.monotonic()
                try:
                    code, last = _pytest(copy, MODULES[mutant.module].tests, timeout)
                finally:
                    path.write_text(original)
                status = "survived" if code == 0 else "killed"
                if code in (4, 5):  # pytest's usage error / nothing collected: the check's fault, not a kill
                    raise SystemExit(f"mutation_check: pytest could not run {MODULES[mutant.module].tests}: {last}")
                outcomes.append(Outcome(mutant, status, time.monotonic() - start, last))
            o = outcomes[-1]
            print(f"[{i}/{len(mutants)}] {o.status:8} {mutant.module:9} {mutant.why} ({o.seconds:.0f} s)", flush=True)
    return outcomes


def table(outcomes: list[Outcome]) -> tuple[str, float]:
    """Return the per-module table and the overall kill ratio (killed / mutants that ran)."""
    rows: list[tuple[str, ...]] = [("module", "mutants", "killed", "survived", "stale", "kill ratio")]
    total = {"mutants": 0, "killed": 0, "survived": 0, "stale": 0}

    def ratio(killed: int, ran: int) -> str:
        return f"{100 * killed / ran:.0f}%" if ran else "-"

    for name in MODULES:
        mine = [o for o in outcomes if o.mutant.module == name]
        if not mine:
            continue
        counts = {s: sum(o.status == s for o in mine) for s in ("killed", "survived", "stale")}
        rows.append((name, str(len(mine)), *(str(counts[s]) for s in counts),
                     ratio(counts["killed"], counts["killed"] + counts["survived"])))  # fmt: skip
        total["mutants"] += len(mine)
        for s in counts:
            total[s] += counts[s]
    ran = total["killed"] + total["survived"]
    rows.append(("total", *(str(total[k]) for k in ("mutants", "killed", "survived", "stale")),
                 ratio(total["killed"], ran)))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines), (total["killed"] / ran if ran else 0.0)


def main(argv: list[str] | None = None) -> int:
    """Run the mutants, print the table, exit 1 below the minimum kill ratio or with a stale mutant."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--module", action="append", choices=sorted(MODULES), help="only this module (repeat)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant's test run [default: 600]")
    parser.add_argument("--min-ratio", type=float, default=0.9, help="minimum kill ratio [default: 0.9]")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.module or m.module in args.module]
    if args.list:
        for m in mutants:
            path, why_stale = _locate(m, ROOT)
            where = f"STALE: {why_stale}" if path is None else str(path.relative_to(ROOT))
            print(f"{m.module:9} {m.why}  [{where}]")
        return 0
    start = time.monotonic()
    outcomes = run(mutants, args.timeout)
    text, kill_ratio = table(outcomes)
    print()
    print(text)
    for o in outcomes:
        if o.status != "killed":
            print(f"{o.status}: {o.mutant.module}: {o.mutant.why}" + (f" ({o.detail})" if o.status == "stale" else ""))
    print(f"{len(outcomes)} mutants in {time.monotonic() - start:.0f} s; kill ratio {100 * kill_ratio:.0f}%"
          f" (minimum {100 * args.min_ratio:.0f}%)")  # fmt: skip
    stale = any(o.status == "stale" for o in outcomes)
    return 1 if kill_ratio < args.min_ratio or stale else 0


if __name__ == "__main__":
    sys.exit(main())
