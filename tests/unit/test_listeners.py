"""Whether a process tree holds a listening socket, read from the real /proc of real processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from unitctl.listeners import unit_listens

# Each child prints "ok" once its socket exists, then waits to be killed.
PLAIN = "print('ok', flush=True); import time; time.sleep(60)"
TCP = (
    "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); print('ok', flush=True); "
    "time.sleep(60)"
)
TCP_UNLISTENED = (
    "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); print('ok', flush=True); time.sleep(60)"
)
UNIX = (
    "import socket, sys, time; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(); "
    "print('ok', flush=True); time.sleep(60)"
)
# A parent that listens on nothing with a child that listens (Gunicorn's master in a wrapper, say).
PARENT = (
    "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', sys.argv[1]], stdout=subprocess.PIPE); "
    "c.stdout.readline(); print('ok', flush=True); time.sleep(60)"
)


@pytest.fixture
def spawn() -> Iterator[Callable[..., int]]:
    procs: list[subprocess.Popen[str]] = []

    def start(code: str, *args: str) -> int:
        p = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "ok"
        return p.pid

    yield start
    for p in procs:
        p.kill()
        p.communicate()  # waits and closes the pipe


def test_a_process_without_sockets_does_not_listen(spawn: Callable[..., int]) -> None:
    assert unit_listens(spawn(PLAIN)) is False


def test_a_bound_socket_that_does_not_listen_does_not_count(spawn: Callable[..., int]) -> None:
    assert unit_listens(spawn(TCP_UNLISTENED)) is False


def test_tcp_and_unix_listeners_count(spawn: Callable[..., int], tmp_path: Path) -> None:
    assert unit_listens(spawn(TCP)) is True
    assert unit_listens(spawn(UNIX, str(tmp_path / "app.sock"))) is True


def test_a_listening_descendant_counts(spawn: Callable[..., int]) -> None:
    assert unit_listens(spawn(PARENT, TCP)) is True
    assert unit_listens(spawn(PARENT, PLAIN)) is False


def test_unknown_when_proc_cannot_tell(tmp_path: Path) -> None:
    assert unit_listens(0) is None
    assert unit_listens(2**22 + 12345) is None  # above pid_max: no such process
    assert unit_listens(1, proc=tmp_path) is None  # no /proc there
