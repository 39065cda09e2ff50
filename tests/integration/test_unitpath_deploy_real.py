"""`unitctl apply --guarded` of units systemd does not read from /etc/systemd/system/NAME, for real: a vendor
unit with an /etc override drop-in, and a template instance. A failed release ends rolled back (exit 4) with the
service running the previous release, never stopped or removed; what unitctl wrote is undone exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_apply_real import Deploy

from unitctl.sandbox import Sandbox

pytestmark = pytest.mark.systemd

VENDOR = "/usr/lib/systemd/system"
ETC = "/etc/systemd/system"


@pytest.fixture
def cleanup(box: Sandbox) -> Iterator[list[str]]:
    """Files outside /etc/systemd/system a test installs (removed, their units stopped, afterwards)."""
    paths: list[str] = []
    yield paths
    for path in paths:
        box.run(["systemctl", "stop", Path(path).name])
        box.run(["rm", "-rf", path])
    box.run(["systemctl", "daemon-reload"])


def started(d: Deploy, box: Sandbox) -> int:
    """Load and start ``d.unit`` as systemd would after a package install; return its MainPID."""
    box.run(["systemctl", "daemon-reload"], check=True)
    res = box.run(["systemctl", "start", d.unit], timeout=120)
    assert res.ok, res.stderr
    assert d.served() == "release v1" and d.ready()
    return d.main_pid()


def last_detail(d: Deploy, phase: str) -> str:
    return "; ".join(p["detail"] for p in d.history()[-1]["phases"] if p["name"] == phase)


def test_failed_release_of_a_vendor_unit_removes_the_etc_copy_and_the_vendor_unit_runs_again(
    box: Sandbox, venv_bin: Path, cleanup: list[str]
) -> None:
    d = Deploy(box, venv_bin)
    d.repo.release("v1")
    vendor_path = f"{VENDOR}/{d.unit}"
    cleanup.append(vendor_path)
    shipped = d.repo.unit(venv_bin, port=d.port)
    box.write_file(vendor_path, shipped)
    dropin = f"{ETC}/{d.unit}.d/override.conf"
    box.write_file(dropin, "[Service]\nEnvironment=OVERRIDE=kept\n")
    started(d, box)
    d.repo.release("v2", table="items_v2")  # imports fine; its table was never migrated: never ready
    # --no-canary: what is tested is the undo of the vendor copy after the switch.
    res = d.apply("--unit-file", d.unit_file("v2", workers=3), "--no-canary", timeout=4)
    assert res.returncode == 4, res.stderr
    assert "rolled back" in res.stderr
    assert not box.run(["test", "-e", d.unit_path]).ok  # the /etc copy is gone
    assert box.read_file(vendor_path) == shipped.encode() and box.read_file(dropin)
    props = box.unit_properties(d.unit, "FragmentPath", "ActiveState", "DropInPaths")
    # The vendor file again (a merged /usr reports it as /lib/systemd/system/NAME).
    real = [box.run(["realpath", p], check=True).stdout.strip() for p in (props["FragmentPath"], vendor_path)]
    assert real[0] == real[1] and props["ActiveState"] == "active"
    assert dropin in props["DropInPaths"]
    assert d.served() == "release v1" and d.ready()
    assert "a copy that shadows" in last_detail(d, "capture")
    rollback = last_detail(d, "rollback")
    assert f"removed {d.unit_path}" in rollback and "restarted" in rollback and "stopped" not in rollback


def test_template_instance_needs_edit_template_and_a_failed_release_restores_the_template(
    box: Sandbox, venv_bin: Path
) -> None:
    d = Deploy(box, venv_bin)
    stem = d.name
    d.name, d.unit = f"{stem}@1", f"{stem}@1.service"
    d.repo.release("v1")
    template_path = f"{ETC}/{stem}@.service"
    template = d.repo.unit(venv_bin, port=d.port).encode() + b"# the administrator's comment\n"
    box.write_file(template_path, template)
    pid = started(d, box)
    d.repo.release("v2", table="items_v2")
    candidate = d.unit_file("v2", workers=3)

    refused = d.apply("--unit-file", candidate, timeout=4)
    assert refused.returncode == 3, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert lines[-1].startswith("unitctl: error: ") and "--edit-template" in lines[-1]
    assert box.read_file(template_path) == template and d.main_pid() == pid
    assert not box.run(["test", "-e", f"{ETC}/{d.unit}"]).ok

    res = d.apply("--unit-file", candidate, "--edit-template", "--json", "--no-canary", timeout=4)
    assert res.returncode == 4, res.stderr
    assert json.loads(res.stdout)["outcome"] == "rolled-back"
    assert box.read_file(template_path) == template  # byte for byte
    assert not box.run(["test", "-e", f"{ETC}/{d.unit}"]).ok
    assert box.unit_properties(d.unit, "ActiveState")["ActiveState"] == "active"
    assert d.served() == "release v1" and d.ready()
    rollback = last_detail(d, "rollback")
    assert f"restored {template_path}" in rollback and "restarted" in rollback
