"""The README's main job: ``python -m unitctl.demo`` end to end, and its teardown on Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unitctl import sandbox as sandbox_mod

pytestmark = pytest.mark.systemd

REPO_ROOT = Path(__file__).resolve().parents[2]


def _demo(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "unitctl.demo", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _mine(name: str) -> list[str]:
    return [item for item in sandbox_mod.leftovers() if name in item]


def test_the_demo_runs_every_release_as_expected_and_leaves_nothing(sandbox: sandbox_mod.Sandbox) -> None:
    # Depends on the session sandbox only so that a host without one fails or skips like the other real tests.
    proc = _demo("--ready-timeout", "6")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^(v\d\S*)\s+exit \d, serves v\d.*$", out, flags=re.M)}
    assert list(rows) == ["v1", "v2", "v3-broken-import", "v4-db-down"], out
    assert re.search(r"^v3-broken-import\s+exit 3, serves v2\s+3\s+v2\s+\S+\s+ok$", out, flags=re.M), out
    assert re.search(r"^v4-db-down\s+exit 3, serves v2\s+3\s+v2\s+\S+\s+ok$", out, flags=re.M), out
    # The database-down release is caught by its canary: the live service is never switched nor rolled back.
    assert "PydanticImportError" in out and "the canary of" in out and "the live service was not touched" in out
    assert "rollback-guard" not in out
    assert "OK: 4/4 steps as expected" in out
    name = re.search(r"sandbox (unitctl-\w+) booted", out)
    assert name, out
    assert _mine(name.group(1)) == []


def test_ctrl_c_tears_the_demo_sandbox_down(sandbox: sandbox_mod.Sandbox) -> None:
    proc = _demo("--ready-timeout", "30")
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    name = ""
    for line in proc.stdout:
        lines.append(line)
        if m := re.search(r"sandbox (unitctl-\w+) booted", line):
            name = m.group(1)
        if line.startswith("== v4-db-down"):
            break  # now waiting up to 30 s for a readiness that never comes
        assert time.monotonic() < deadline, "".join(lines)
    else:
        pytest.fail(f"the demo ended before deploying v4 (exit {proc.wait(timeout=60)}):\n{''.join(lines)}")
    assert name, "".join(lines)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(lines) + rest
    assert "interrupted; the sandbox was torn down" in rest
    assert _mine(name) == []
