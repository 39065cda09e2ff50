"""Third-party warnings unitctl cannot fix, each as a marker for exactly the tests that trigger it."""

from __future__ import annotations

import pytest

# httpcore (1.0.x, _backends/sync.py connect_unix_socket) opens the AF_UNIX socket and does not close it when
# connect() fails: a probe of a socket file that does not exist (yet) leaves the socket to the garbage collector.
# CPython frees it as soon as the exception is gone, so no descriptor piles up across readiness polls.
HTTPCORE_UNIX_CONNECT_LEAK = pytest.mark.filterwarnings(
    r"ignore:unclosed <socket\.socket fd=\d+, family=1, type=1, proto=0>:ResourceWarning"
)
