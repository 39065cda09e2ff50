"""The PIDs in a unit's cgroup, read from the cgroup file system where this host mounts it.

systemd names the unit's cgroup (``ControlGroup=``, e.g. ``/system.slice/app.service``) relative to the root of
the hierarchy it manages, which is mounted at ``/sys/fs/cgroup`` (cgroup v2), or under it as ``unified`` (v2 next
to v1 controllers) or ``systemd`` (v1 only). Inside a container (systemd-nspawn) the same paths show the
container's own tree, so a unitctl running there reads its own units' cgroups.
"""

from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_HIERARCHIES = ("", "unified", "systemd")  # v2, hybrid's v2 mount, v1's name=systemd hierarchy


def cgroup_pids(control_group: str, root: Path = CGROUP_ROOT) -> set[int] | None:
    """Return the PIDs in ``control_group`` (an empty set when it holds none), or None when it cannot be read."""
    if not control_group.startswith("/") or "/.." in control_group or "\n" in control_group:
        return None
    for hierarchy in _HIERARCHIES:
        procs = root / hierarchy / control_group.lstrip("/") / "cgroup.procs"
        try:
            text = procs.read_text()
        except FileNotFoundError:
            continue
        except OSError:
            return None
        try:
            return {int(word) for word in text.split()}
        except ValueError:
            return None
    return None
