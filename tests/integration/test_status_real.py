"""`unitctl status` of a unit systemd does not know, against the real systemd: a mistake, like `systemctl status`."""

from __future__ import annotations

from pathlib import Path

import pytest

from unitctl.sandbox import Sandbox

pytestmark = pytest.mark.systemd


@pytest.mark.parametrize("backend", ["dbus", "systemctl"])
def test_status_of_an_unknown_unit_never_deployed_is_exit_3_with_one_line(
    box: Sandbox, venv_bin: Path, backend: str
) -> None:
    r = box.run(
        [
            "env", "-C", "/srv", str(venv_bin / "unitctl"), "status", "nosuch-unit", "--backend", backend,
            "--history-dir", "/srv/status-history",
        ],
        timeout=60,
    )  # fmt: skip
    assert r.returncode == 3, r.stderr
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith("unitctl: error: nosuch-unit.service: no such unit (systemd does not know it)")
    assert "; check the name" in r.stderr


def test_status_of_a_known_unit_never_deployed_reports_it(box: Sandbox, venv_bin: Path) -> None:
    r = box.run(["env", "-C", "/srv", str(venv_bin / "unitctl"), "status", "systemd-journald"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("systemd-journald.service: loaded, active/running")
