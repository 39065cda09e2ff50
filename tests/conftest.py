"""Shared fixtures: a real systemd sandbox (session-scoped) with per-test clean-up.

Outside CI a host that cannot boot the sandbox skips the real-systemd tests with the reason;
in CI (CI=true) that is a failure: a sandbox that cannot start never counts as a pass.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from unitctl import sandbox as sandbox_mod
from unitctl.errors import SandboxError

REPO_ROOT = Path(__file__).resolve().parent.parent
UNIT_DIR = "/etc/systemd/system"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "systemd_analyze: runs the real systemd-analyze (a failure in CI without it)")
    config.addinivalue_line(
        "markers", "faults: the deploy engine's fault-injection matrix (whole in CI, a quick subset elsewhere)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    # A missing systemd-analyze skips these tests on a developer's host but fails them in CI, never a silent pass.
    if item.get_closest_marker("systemd_analyze") is not None and shutil.which("systemd-analyze") is None:
        if _in_ci():
            pytest.fail("systemd-analyze is not installed in CI (apt-get install systemd)", pytrace=False)
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")


@pytest.fixture(scope="session")
def sandbox() -> Iterator[sandbox_mod.Sandbox]:
    """A booted systemd container shared by the session's real-systemd tests."""
    try:
        sandbox_mod.check_host()
    except SandboxError as exc:
        if _in_ci():
            pytest.fail(f"the systemd sandbox cannot start in CI: {exc}")
        pytest.skip(f"no systemd sandbox on this host: {exc}")
    with sandbox_mod.booted(bind_ro=[REPO_ROOT, sys.prefix]) as box:
        yield box


def _units(box: sandbox_mod.Sandbox) -> set[str]:
    d = box.host_path(UNIT_DIR)
    return {p.name for p in d.iterdir()} if d.exists() else set()


@pytest.fixture
def box(sandbox: sandbox_mod.Sandbox) -> Iterator[sandbox_mod.Sandbox]:
    """The session sandbox; units and drop-in dirs a test adds to /etc/systemd/system go after it."""
    before = _units(sandbox)
    yield sandbox
    sandbox.reap()  # a process a test started and did not finish: killed, its pipes closed
    added = sorted(_units(sandbox) - before)
    services = [n for n in added if not n.endswith(".d") and "." in n]
    if services:
        sandbox.systemctl("stop", *services, timeout=60)
        sandbox.systemctl("reset-failed", *services)
    for name in added:
        path = sandbox.host_path(f"{UNIT_DIR}/{name}")
        if path.is_dir() and not path.is_symlink():
            for child in path.iterdir():
                child.unlink()
            path.rmdir()
        else:
            path.unlink()
    if added:
        sandbox.systemctl("daemon-reload", check=True)


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    """The bin directory of the virtual environment running the tests (gunicorn, unitctl live here)."""
    return Path(sys.prefix) / "bin"


@pytest.fixture(autouse=True)
def _fresh_masking() -> Iterator[None]:
    """Start every test with no remembered secret values (one unitctl process is one command; a test run is many)."""
    from unitctl import masking

    masking.forget()
    yield
    masking.forget()
