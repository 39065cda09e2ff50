"""Atomic writes keep mode and owner and leave no temp files; snapshots restore exactly."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from unitctl import fsutil
from unitctl.errors import InputError


def test_atomic_write_replaces_bytes_and_keeps_mode_and_owner(tmp_path: Path) -> None:
    target = tmp_path / "app.service"
    target.write_bytes(b"old\n")
    target.chmod(0o640)
    os.chown(target, 1, 2) if os.geteuid() == 0 else None
    before = target.stat()
    fsutil.atomic_write(target, b"new\n")
    after = target.stat()
    assert target.read_bytes() == b"new\n"
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert after.st_ino != before.st_ino  # replaced by rename, not rewritten in place
    assert [p.name for p in tmp_path.iterdir()] == ["app.service"]


def test_atomic_write_of_a_new_file_uses_0644(tmp_path: Path) -> None:
    target = tmp_path / "new.service"
    fsutil.atomic_write(target, b"x")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "app.service"
    target.write_bytes(b"old\n")

    def boom(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", boom)
    with pytest.raises(OSError):
        fsutil.atomic_write(target, b"new\n")
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["app.service"]


def test_snapshot_restore_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "app.service"
    target.write_bytes(b"[Service]\nExecStart=/bin/true\n")
    target.chmod(0o600)
    snap = fsutil.snapshot(target)
    target.write_bytes(b"changed")
    target.chmod(0o644)
    fsutil.restore(snap)
    assert target.read_bytes() == b"[Service]\nExecStart=/bin/true\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert snap.sha256 == fsutil.sha256(target.read_bytes())


def test_restore_of_an_absent_file_removes_it(tmp_path: Path) -> None:
    target = tmp_path / "app.service"
    snap = fsutil.snapshot(target)
    assert not snap.exists and snap.sha256 is None
    target.write_bytes(b"created by the deploy")
    fsutil.restore(snap)
    assert not target.exists()
    fsutil.restore(snap)  # idempotent


def test_read_unit_bytes_turns_every_read_failure_into_one_input_error(tmp_path: Path) -> None:
    unit = tmp_path / "app.service"
    unit.write_bytes(b"[Service]\n")
    assert fsutil.read_unit_bytes(unit) == b"[Service]\n"
    with pytest.raises(InputError, match=r"missing.service: no such file; check --unit-file$"):
        fsutil.read_unit_bytes(tmp_path / "missing.service", hint="check --unit-file")
    with pytest.raises(InputError, match="is a directory, not a unit file"):
        fsutil.read_unit_bytes(tmp_path)
    (tmp_path / "mem.service").symlink_to("/proc/self/mem")  # a read that fails (EIO) even for root
    with pytest.raises(InputError, match="mem.service: cannot read: Input/output error"):
        fsutil.read_unit_bytes(tmp_path / "mem.service")
