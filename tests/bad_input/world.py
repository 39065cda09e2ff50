"""The throwaway world every bad-input case runs in: odd files, a unit root, a history dir, a working directory."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

GUNICORN_UNIT = "[Service]\nType=notify\nExecStart=/srv/app/venv/bin/gunicorn --preload -w 9 app:app\n"
HUGE_BYTES = 5 * 1024 * 1024  # over fsutil.MAX_INPUT_BYTES (4 MiB)
TIMEOUT = 30.0  # seconds: a case still running then is a hang


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def build(tmp: Path) -> dict[str, str]:
    """Create every kind of input a case can name; return the placeholders for its argv."""
    files = tmp / "files"
    files.mkdir()
    (files / "app.service").write_text(GUNICORN_UNIT)
    (files / "broken.service").write_text("[Service\nExecStart=/bin/true\n")
    (files / "sleep.service").write_text("[Service]\nExecStart=/bin/sleep 9\n")
    (files / "template.service").write_text("[Service]\nExecStart={{ venv }}/bin/gunicorn app:app\n")
    os.mkfifo(files / "fifo.service")
    (files / "dir.service").mkdir()
    (files / "link-to-fifo.service").symlink_to(files / "fifo.service")
    with open(files / "huge.service", "wb") as fh:  # sparse: costs no disk
        fh.truncate(HUGE_BYTES)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(files / "socket.service"))  # the file stays after close
    sock.close()
    (files / "template.j2").write_text("[Service]\nExecStart={{ exec_start }}\n")
    root = tmp / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/app.service").write_text(GUNICORN_UNIT)
    (root / "etc/systemd/system/sleep.service").write_text("[Service]\nExecStart=/bin/sleep 9\n")
    (tmp / "work").mkdir()
    (tmp / "history").mkdir()
    (tmp / "lock").mkdir()  # UNITCTL_LOCK_DIR: a deploy's lock never leaves the case's directory
    return {
        "unit": str(files / "app.service"),
        "broken": str(files / "broken.service"),
        "not_gunicorn": str(files / "sleep.service"),
        "jinja": str(files / "template.service"),
        "fifo": str(files / "fifo.service"),
        "dir": str(files / "dir.service"),
        "link_to_fifo": str(files / "link-to-fifo.service"),
        "huge": str(files / "huge.service"),
        "socket": str(files / "socket.service"),
        "dev_zero": "/dev/zero",
        "missing": str(files / "missing.service"),
        "template": str(files / "template.j2"),
        "files": str(files),
        "root": str(root),
        "history": str(tmp / "history"),
        "long_name": "a" * 300,
    }


def snapshot(tmp: Path) -> dict[str, tuple[str, str]]:
    """Return every path under tmp with its kind and, for regular files, a digest of its bytes."""
    out: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(tmp):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    out[str(p)] = ("file", hashlib.file_digest(fh, "sha256").hexdigest())
            else:
                out[str(p)] = (stat.filemode(st.st_mode)[0], os.readlink(p) if p.is_symlink() else "")
    return out


def run(argv: list[str], *, cwd: Path, lock_dir: Path) -> Outcome:
    """Run ``python -m unitctl ARGV`` in cwd; a run longer than TIMEOUT fails the test as a hang."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "UNITCTL_"))}
    env.update(NO_COLOR="1", LC_ALL="C.UTF-8", UNITCTL_LOCK_DIR=str(lock_dir))
    try:
        res = subprocess.run(
            [sys.executable, "-m", "unitctl", *argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"unitctl {' '.join(argv)} hung (no exit within {TIMEOUT:g}s)") from None
    return Outcome(res.returncode, res.stdout, res.stderr)
