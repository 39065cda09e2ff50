"""Reading a unit's PIDs from the cgroup file system, in each layout systemd mounts it."""

from __future__ import annotations

from pathlib import Path

import pytest

from unitctl.systemd.cgroup import cgroup_pids

GROUP = "/system.slice/app.service"


def _procs(root: Path, hierarchy: str, text: str) -> None:
    d = root / hierarchy / GROUP.lstrip("/")
    d.mkdir(parents=True)
    (d / "cgroup.procs").write_text(text)


@pytest.mark.parametrize("hierarchy", ["", "unified", "systemd"])
def test_reads_the_pids_in_each_layout(tmp_path: Path, hierarchy: str) -> None:
    _procs(tmp_path, hierarchy, "101\n102\n103\n")
    assert cgroup_pids(GROUP, tmp_path) == {101, 102, 103}


def test_an_empty_cgroup_is_an_empty_set_not_unknown(tmp_path: Path) -> None:
    _procs(tmp_path, "", "")
    assert cgroup_pids(GROUP, tmp_path) == set()


@pytest.mark.parametrize("group", ["", "system.slice/app.service", "/system.slice/../../etc", "/a\n/b"])
def test_a_group_that_is_not_a_cgroup_path_is_unknown(tmp_path: Path, group: str) -> None:
    _procs(tmp_path, "", "1\n")
    assert cgroup_pids(group, tmp_path) is None


def test_a_missing_or_garbled_cgroup_is_unknown(tmp_path: Path) -> None:
    assert cgroup_pids(GROUP, tmp_path) is None
    _procs(tmp_path, "unified", "12\nnot-a-pid\n")
    assert cgroup_pids(GROUP, tmp_path) is None
