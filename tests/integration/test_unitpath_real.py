"""Where unitctl writes a unit, checked against the real systemd: what both backends report, what unitpath
decides from it, and that writing through the target and undoing it change exactly what systemd loads.

Vendor units, templates and links live outside /etc/systemd/system, which the ``box`` fixture does not clean:
the ``placed`` fixture stops the units and removes the files each test puts there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_backends_real import BACKENDS, Remote

from unitctl import fsutil
from unitctl.errors import ExitCode
from unitctl.sandbox import Sandbox
from unitctl.systemd.base import UnitState
from unitctl.unitpath import UndoPlan, WriteTarget, loaded_bytes, undo_plan

pytestmark = pytest.mark.systemd

ETC = "/etc/systemd/system"
VENDOR = "/usr/lib/systemd/system"

# Runs inside the container, as the engine will: the backend's state, then resolve() on the real file system.
RESOLVE = textwrap.dedent(
    """\
    import dataclasses, json, sys
    from unitctl.errors import UnitctlError
    from unitctl.systemd import get_backend
    from unitctl.unitpath import resolve
    backend = get_backend(sys.argv[1])
    unit, allow = sys.argv[2], sys.argv[3] == "1"
    state = backend.state(unit)
    out = {"backend": backend.name, "state": dataclasses.asdict(state)}
    try:
        target = resolve(unit, state, allow_template=allow)
        out["target"] = {**dataclasses.asdict(target), "path": str(target.path), "undo": target.undo}
    except UnitctlError as exc:
        out["error"], out["exit_code"] = str(exc), int(exc.exit_code)
    print(json.dumps(out))
    """
)


@dataclasses.dataclass
class Placed:
    """Files and units a test puts outside /etc/systemd/system, taken away after it."""

    box: Sandbox
    paths: list[str] = dataclasses.field(default_factory=list)
    units: list[str] = dataclasses.field(default_factory=list)

    def file(self, path: str, text: str) -> None:
        self.paths.append(path)
        self.box.write_file(path, text)

    def link(self, path: str, target: str) -> None:
        self.paths.append(path)
        self.box.host_path(path).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, self.box.host_path(path))


@pytest.fixture
def placed(box: Sandbox) -> Iterator[Placed]:
    p = Placed(box)
    yield p
    if p.units:
        box.systemctl("stop", *p.units, timeout=60)
        box.systemctl("reset-failed", *p.units)
    for path in reversed(p.paths):
        host = box.host_path(path)
        if host.is_symlink() or host.is_file():
            host.unlink()
        elif host.is_dir():
            for child in host.iterdir():
                child.unlink()
            host.rmdir()
    box.systemctl("daemon-reload", check=True)


class Deploy:
    """Resolve, write, undo as the engine will, with one real backend."""

    def __init__(self, box: Sandbox, venv_bin: Path, backend: str) -> None:
        self.box, self.python, self.backend = box, str(venv_bin / "python"), backend
        self.remote = Remote(box, venv_bin, backend)
        box.write_file("/srv/unitctl-unitpath.py", RESOLVE)

    def resolve(self, unit: str, *, allow_template: bool = False) -> dict[str, Any]:
        res = self.box.run(
            [self.python, "/srv/unitctl-unitpath.py", self.backend, unit, "1" if allow_template else "0"], timeout=120
        )
        assert res.ok, res.stderr
        out: dict[str, Any] = json.loads(res.stdout)
        assert out["backend"] == self.backend
        return out

    def target(self, unit: str, *, allow_template: bool = False) -> dict[str, Any]:
        out = self.resolve(unit, allow_template=allow_template)
        assert "target" in out, out
        return out

    def write(self, path: str, data: bytes) -> None:
        fsutil.atomic_write(self.box.host_path(path), data)
        self.remote("daemon_reload")

    def undo(self, unit: str, plan: UndoPlan, snap: fsutil.FileSnapshot) -> None:
        """Run ``plan`` with the backend: what a rollback does with the file unitctl wrote."""
        if plan.stop_first:
            self.remote("stop", unit)
        fsutil.restore(snap)
        self.remote("daemon_reload")
        if plan.then == "restart":
            self.remote("restart", unit)
        elif plan.then == "stop":
            self.remote("stop", unit)


@pytest.fixture(params=BACKENDS)
def deploy(request: pytest.FixtureRequest, box: Sandbox, venv_bin: Path) -> Deploy:
    return Deploy(box, venv_bin, request.param)


def loaded(box: Sandbox, unit: str) -> dict[str, str]:
    """What systemd runs for ``unit``: the command, the merged environment, where it read it, its state."""
    props = box.unit_properties(
        unit, "ExecStart", "Environment", "FragmentPath", "DropInPaths", "ActiveState", "SubState", "LoadState"
    )
    # ExecStart's start/stop times and pid change with every start: keep the command.
    props["ExecStart"] = props.get("ExecStart", "").split(" ; ignore_errors")[0]
    return props


def state_of(out: dict[str, Any]) -> UnitState:
    s = out["state"]
    return UnitState(**{**s, "dropin_paths": tuple(s["dropin_paths"])})


def deploy_target(out: dict[str, Any]) -> WriteTarget:
    """Rebuild the WriteTarget the container printed."""
    t = out["target"]
    return WriteTarget(
        unit=t["unit"],
        path=Path(t["path"]),
        kind=t["kind"],
        exists=t["exists"],
        first_deploy=t["first_deploy"],
        loaded_from=t["loaded_from"],
        via_link=t["via_link"],
        dropin_paths=tuple(t["dropin_paths"]),
    )


def sleeper(seconds: int, *, description: str = "unitctl unitpath test") -> str:
    return f"[Unit]\nDescription={description}\n\n[Service]\nExecStart=/bin/sleep {seconds}\n"


def name(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def start(box: Sandbox, placed: Placed, unit: str) -> dict[str, str]:
    """Load and start ``unit`` (stopped after the test); return what systemd runs for it."""
    placed.units.append(unit)
    box.systemctl("daemon-reload", check=True)
    box.systemctl("start", unit, check=True)
    return loaded(box, unit)


def change(deploy: Deploy, out: dict[str, Any], text: str) -> tuple[UndoPlan, fsutil.FileSnapshot, dict[str, str]]:
    """Write ``text`` through the resolved target and restart, as a deploy does; return the undo and the new state."""
    unit, path = out["target"]["unit"], out["target"]["path"]
    plan = undo_plan(deploy_target(out), state_of(out))
    snap = fsutil.snapshot(deploy.box.host_path(path))
    deploy.write(path, text.encode())
    deploy.remote("restart", unit)
    return plan, snap, loaded(deploy.box, unit)


def test_vendor_unit_gets_an_etc_copy_and_the_undo_brings_the_vendor_unit_back_running(
    deploy: Deploy, box: Sandbox, placed: Placed
) -> None:
    unit = f"{name('vend')}.service"
    vendor_text = sleeper(1001)
    placed.file(f"{VENDOR}/{unit}", vendor_text)
    placed.file(f"{VENDOR}/{unit}.d/10-vendor.conf", "[Service]\nEnvironment=FROM_VENDOR=1\n")
    placed.paths.append(f"{VENDOR}/{unit}.d")
    box.write_file(f"{ETC}/{unit}.d/override.conf", "[Service]\nEnvironment=FROM_ETC=1\n")
    before = start(box, placed, unit)
    # Debian's systemd reads /usr/lib through /lib (merged /usr) and reports that path.
    assert before["FragmentPath"] in (f"{VENDOR}/{unit}", f"/lib/systemd/system/{unit}")
    assert before["Environment"] == "FROM_VENDOR=1 FROM_ETC=1" and before["ActiveState"] == "active"

    out = deploy.target(unit)
    target = out["target"]
    assert (target["path"], target["kind"], target["exists"], target["first_deploy"], target["undo"]) == (
        f"{ETC}/{unit}",
        "vendor-copy",
        False,
        False,
        "remove",
    )
    assert target["loaded_from"] == before["FragmentPath"]
    assert target["dropin_paths"] == before["DropInPaths"].split()
    # What the candidate is compared with: the vendor file systemd runs, not the absent copy.
    assert loaded_bytes(deploy_target(out), root=box.root) == vendor_text.encode()

    plan, snap, after = change(deploy, out, vendor_text.replace("1001", "2002"))
    assert plan == UndoPlan(stop_first=False, undo="remove", then="restart")
    assert after["FragmentPath"] == f"{ETC}/{unit}" and "argv[]=/bin/sleep 2002" in after["ExecStart"]
    assert after["Environment"] == before["Environment"]  # every drop-in still applies on top of the copy
    assert after["ActiveState"] == "active"

    deploy.undo(unit, plan, snap)
    assert loaded(box, unit) == before
    assert not box.host_path(f"{ETC}/{unit}").exists()
    assert box.read_file(f"{VENDOR}/{unit}").decode() == vendor_text


def test_template_instance_is_refused_without_the_flag_and_with_it_the_template_changes(
    deploy: Deploy, box: Sandbox, placed: Placed
) -> None:
    stem = name("tpl")
    template, instance = f"{stem}@.service", f"{stem}@1.service"
    text = sleeper(1003, description="instance %i")
    box.write_file(f"{ETC}/{template}", text)
    before = start(box, placed, instance)
    assert before["FragmentPath"] == f"{ETC}/{template}"

    refused = deploy.resolve(instance)
    assert refused["exit_code"] == ExitCode.REFUSED
    assert f"{instance} runs from the template {ETC}/{template}" in refused["error"]
    assert "--edit-template" in refused["error"] and "\n" not in refused["error"]
    assert box.read_file(f"{ETC}/{template}").decode() == text

    out = deploy.target(instance, allow_template=True)
    target = out["target"]
    assert (target["path"], target["kind"], target["exists"], target["first_deploy"]) == (
        f"{ETC}/{template}",
        "template",
        True,
        False,
    )
    plan, snap, after = change(deploy, out, text.replace("1003", "2003"))
    assert plan == UndoPlan(stop_first=False, undo="restore", then="restart")
    assert "argv[]=/bin/sleep 2003" in after["ExecStart"]

    deploy.undo(instance, plan, snap)
    assert loaded(box, instance) == before
    assert box.read_file(f"{ETC}/{template}").decode() == text


def test_linked_unit_keeps_its_link_and_the_target_is_written(deploy: Deploy, box: Sandbox, placed: Placed) -> None:
    unit = f"{name('linked')}.service"
    real = f"/etc/systemd/units/{unit}"
    text = sleeper(1004)
    placed.file(real, text)
    box.host_path(f"{ETC}/{unit}").symlink_to(real)
    before = start(box, placed, unit)

    out = deploy.target(unit)
    assert out["state"]["unit_file_state"] == "linked"
    target = out["target"]
    assert (target["path"], target["kind"], target["exists"], target["via_link"]) == (
        real,
        "unit-file",
        True,
        f"{ETC}/{unit}",
    )
    plan, snap, after = change(deploy, out, text.replace("1004", "2004"))
    assert os.readlink(box.host_path(f"{ETC}/{unit}")) == real
    assert "argv[]=/bin/sleep 2004" in after["ExecStart"]

    deploy.undo(unit, plan, snap)
    assert os.readlink(box.host_path(f"{ETC}/{unit}")) == real
    assert box.read_file(real).decode() == text
    assert loaded(box, unit) == before


# A link unitctl must not write through. systemd loads one out of /etc/systemd (writing there would change a
# file unitctl does not own); it ignores one into a subdirectory of the unit directory and a dangling one (neither
# is a unit). Each is refused with one line and nothing changes.
REFUSED_LINKS = [
    pytest.param("/srv/{stem}/deploy/{unit}", True, ", outside /etc/systemd:", id="out-of-etc-to-srv"),
    pytest.param(f"{VENDOR}/{{unit}}", True, ", outside /etc/systemd:", id="out-of-etc-to-vendor"),
    pytest.param(f"{ETC}/sub-{{stem}}/{{unit}}", False, " that systemd does not load", id="into-an-etc-subdir"),
    pytest.param("/srv/{stem}/missing/{unit}", False, " that systemd does not load", id="dangling"),
]


@pytest.mark.parametrize(("where", "loads", "why"), REFUSED_LINKS)
def test_a_link_unitctl_must_not_write_through_is_refused_and_nothing_changes(
    deploy: Deploy, box: Sandbox, placed: Placed, where: str, loads: bool, why: str
) -> None:
    stem = name("badlink")
    unit = f"{stem}.service"
    real = where.format(stem=stem, unit=unit)
    text = sleeper(1005)
    if "missing" not in real:
        placed.file(real, text)
        if real.startswith(f"{ETC}/sub-"):
            placed.paths.insert(0, posixpath.dirname(real))  # removed after the file
    box.host_path(f"{ETC}/{unit}").symlink_to(real)
    if loads:
        before = start(box, placed, unit)
    else:
        box.systemctl("daemon-reload", check=True)

    out = deploy.resolve(unit)
    assert out["exit_code"] == ExitCode.REFUSED, out
    assert out["error"].startswith(f"{ETC}/{unit} is a symlink to {real}{why}")
    assert "\n" not in out["error"]
    assert os.readlink(box.host_path(f"{ETC}/{unit}")) == real
    if loads:
        assert "cp --remove-destination" in out["error"]
        assert box.read_file(real).decode() == text and loaded(box, unit) == before
    else:
        assert (out["state"]["load_state"], out["state"]["fragment_path"]) == ("not-found", ""), out


def test_first_deploy_is_stopped_and_removed_by_the_undo(deploy: Deploy, box: Sandbox) -> None:
    unit = f"{name('fresh')}.service"
    out = deploy.target(unit)
    assert out["state"]["load_state"] == "not-found"
    target = out["target"]
    assert (target["path"], target["kind"], target["exists"], target["first_deploy"]) == (
        f"{ETC}/{unit}",
        "unit-file",
        False,
        True,
    )
    plan = undo_plan(deploy_target(out), state_of(out))
    assert plan == UndoPlan(stop_first=True, undo="remove", then="nothing")
    snap = fsutil.snapshot(box.host_path(target["path"]))
    deploy.write(target["path"], sleeper(1006).encode())
    deploy.remote("start", unit)
    assert loaded(box, unit)["ActiveState"] == "active"

    deploy.undo(unit, plan, snap)
    after = loaded(box, unit)
    assert (after["LoadState"], after["ActiveState"], after["FragmentPath"]) == ("not-found", "inactive", "")
    assert not box.host_path(f"{ETC}/{unit}").exists()


def test_a_running_unit_whose_file_is_gone_is_refused(deploy: Deploy, box: Sandbox) -> None:
    unit = f"{name('gone')}.service"
    box.write_file(f"{ETC}/{unit}", sleeper(1007))
    box.systemctl("daemon-reload", check=True)
    box.systemctl("start", unit, check=True)
    box.host_path(f"{ETC}/{unit}").unlink()
    box.systemctl("daemon-reload", check=True)
    try:
        out = deploy.resolve(unit)
        assert (out["state"]["load_state"], out["state"]["active_state"]) == ("not-found", "active")
        assert out["exit_code"] == ExitCode.REFUSED
        assert f"{unit} is active/running but has no unit file" in out["error"]
    finally:
        box.systemctl("stop", unit, timeout=60)
