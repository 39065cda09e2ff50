"""The real edges the commands talk to: a systemd backend and readiness probes (tests replace ``real_edges``)."""

from __future__ import annotations

from collections.abc import Callable

from unitctl.deploy.model import Edges
from unitctl.probe import ProbeResult


def probe_factory(url: str) -> Callable[[], ProbeResult]:
    """Return a one-shot readiness probe of ``url``."""
    from unitctl.probe import Probe

    return Probe(url).check


def real_edges(backend_name: str | None) -> Edges:
    """Return the real edges: a systemd backend, httpx probes, systemd-analyze verify."""
    from unitctl.systemd import get_backend

    return Edges(backend=get_backend(backend_name or "auto"), probe_factory=probe_factory)
