"""Whether a unit's processes hold a listening socket, read from /proc (the guard's evidence that the unit serves).

A ready answer on the readiness URL proves little if the unit itself listens on nothing: another service may hold
the address while the unit's Gunicorn keeps retrying its bind ("Connection in use", five times a second apart, the
unit active all along). The unit's processes are its main process and that process's descendants (Gunicorn's
workers; Gunicorn behind poetry/uv run or sh -c); with socket activation Gunicorn holds the sockets systemd passed.
Listening sockets are read in the main process's network namespace. The answer is True, False, or None when /proc
cannot tell (not root, the process just exited): unknown never blocks a deploy.
"""

from __future__ import annotations

import os
from pathlib import Path

_TCP_LISTEN = "0A"
_UNIX_ACCEPTING = 0x00010000  # __SO_ACCEPTCON in the Flags of /proc/net/unix: a listening socket


def unit_listens(main_pid: int, *, proc: Path = Path("/proc")) -> bool | None:
    """Tell whether ``main_pid`` or a descendant holds a listening TCP or unix socket; None if /proc cannot tell."""
    if main_pid <= 0:
        return None
    try:
        inodes = _listening_inodes(proc / str(main_pid) / "net")
        return any(_holds_any(proc / str(pid) / "fd", inodes) for pid in _tree(proc, main_pid))
    except (OSError, ValueError):
        return None


def _listening_inodes(net: Path) -> set[str]:
    inodes: set[str] = set()
    for name in ("tcp", "tcp6"):
        try:
            rows = (net / name).read_text().splitlines()[1:]
        except FileNotFoundError:  # no IPv6 in this namespace
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == _TCP_LISTEN:
                inodes.add(cols[9])
    for row in (net / "unix").read_text().splitlines()[1:]:
        cols = row.split()
        if len(cols) > 6 and int(cols[3], 16) & _UNIX_ACCEPTING:
            inodes.add(cols[6])
    return inodes


def _tree(proc: Path, root: int) -> list[int]:
    """Return root and every descendant, from the parent pid in each /proc/PID/stat."""
    children: dict[int, list[int]] = {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            stat = (proc / name / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):  # exited meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # "PID (COMM) STATE PPID ...": COMM may hold ") "
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _holds_any(fd_dir: Path, inodes: set[str]) -> bool:
    try:
        names = os.listdir(fd_dir)
    except (FileNotFoundError, ProcessLookupError):  # exited meanwhile
        return False
    for name in names:
        try:
            target = os.readlink(fd_dir / name)
        except FileNotFoundError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False
