"""Every bad input gets one line: no traceback, no hang, exit 2 or 3, nothing written (issue 9).

The cases live in cases.jsonl, one JSON object a line, so that adding one is one line:

    {"argv": ["rewrite", "{fifo}"], "exit": 3, "line": "is a FIFO"}

argv may name the inputs world.build() makes ({unit}, {broken}, {not_gunicorn}, {jinja}, {fifo}, {dir},
{link_to_fifo}, {socket}, {huge}, {dev_zero}, {missing}, {template}, {root}, {history}, {long_name}...); "line" is a
regular expression the one error line must match; optional keys: "toml" (text of ./unitctl.toml), "toml_hex" (its
bytes), "setup" (toml-fifo, toml-dir, toml-huge, history-fifo, lock-on-dev-full) and "hint": false for a message
known to lack its "; what to do" part. Each case runs ``python -m unitctl`` as a subprocess with a timeout, in a fresh
directory that is compared before and after. Commands that need systemd get only inputs refused before it is asked.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import world

CASES_FILE = Path(__file__).with_name("cases.jsonl")
ERROR_LINE = re.compile(r"^unitctl: error: \S.*$")


def load_cases() -> list[dict[str, Any]]:
    cases = []
    for number, text in enumerate(CASES_FILE.read_text(encoding="utf-8").splitlines(), 1):
        if text.strip() and not text.startswith("#"):
            case = json.loads(text)
            case["id"] = f"{number}:" + " ".join(case["argv"])[:60]
            cases.append(case)
    return cases


CASES = load_cases()


def prepare(case: dict[str, Any], tmp: Path) -> tuple[list[str], Path]:
    """Build the world for one case; return its argv and working directory."""
    names = world.build(tmp)
    work = tmp / "work"
    toml = work / "unitctl.toml"
    if "toml" in case:
        toml.write_text(case["toml"], encoding="utf-8")
    if "toml_hex" in case:
        toml.write_bytes(bytes.fromhex(case["toml_hex"]))
    setup = case.get("setup")
    if setup == "toml-fifo":
        os.mkfifo(toml)
    elif setup == "toml-dir":
        toml.mkdir()
    elif setup == "toml-huge":
        with open(toml, "wb") as fh:
            fh.truncate(world.HUGE_BYTES)
    elif setup == "history-fifo":  # a FIFO planted as the history must not hang history, status or apply
        os.mkfifo(tmp / "history" / "history.jsonl")
    elif setup == "lock-on-dev-full":  # writing the lock fails as on a full disk
        (tmp / "lock" / "app.service.lock").symlink_to("/dev/full")
    elif setup is not None:
        raise AssertionError(f"unknown setup {setup!r} in {CASES_FILE.name}")
    return [a.format(**names) for a in case["argv"]], work


def run_case(case: dict[str, Any]) -> tuple[world.Outcome, bool]:
    """Run one case in its own directory; return the outcome and whether anything under it changed."""
    with tempfile.TemporaryDirectory(prefix="unitctl-bad-input-") as t:
        tmp = Path(t)
        argv, work = prepare(case, tmp)
        before = world.snapshot(tmp)
        outcome = world.run(argv, cwd=work, lock_dir=tmp / "lock")
        after = world.snapshot(tmp)
        # The per-unit lock file (in /run/lock/unitctl on a server) is runtime state, not something the command
        # changed: a refusal after the lock was taken may leave the empty file behind, as flock(1) does.
        lock = str(tmp / "lock" / "app.service.lock")
        if lock not in before:
            after.pop(lock, None)
        return outcome, after != before


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[str, tuple[world.Outcome, bool]]]:
    # Each case is a fresh interpreter: run a few at once (each still has its own hang timeout).
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip([c["id"] for c in CASES], pool.map(run_case, CASES), strict=True))
    yield results


def test_the_cases_cover_every_command() -> None:
    commands = {c["argv"][0] for c in CASES}
    assert {"render", "rewrite", "diff", "verify", "apply", "rollback", "status", "history", "deploy"} <= commands


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_gets_one_line(case: dict[str, Any], outcomes: dict[str, tuple[world.Outcome, bool]]) -> None:
    outcome, changed = outcomes[case["id"]]
    shown = f"argv={case['argv']!r}\nexit={outcome.code}\nstderr:\n{outcome.stderr}\nstdout:\n{outcome.stdout}"
    assert "Traceback" not in outcome.stderr, shown
    assert outcome.code == case["exit"], shown
    lines = outcome.stderr.splitlines()
    errors = [line for line in lines if line.startswith("unitctl: error:")]
    assert len(errors) == 1, shown
    # Anything else on stderr is a warning printed before the refusal (render warns, then fails to write).
    assert all(line.startswith("unitctl: warning: ") for line in lines if line not in errors), shown
    assert ERROR_LINE.match(errors[0]), shown
    assert re.search(case["line"], errors[0]), f"/{case['line']}/ not in the error line\n{shown}"
    if case.get("hint", True):
        assert "; " in errors[0], f"the line says what is wrong but not what to do\n{shown}"
    assert outcome.stdout == "", shown
    assert not changed, f"something was written\n{shown}"
