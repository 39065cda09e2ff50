"""The example app: plain WSGI, served by Gunicorn as ``wsgi:application``.

/              the release string (which code is serving)
/health        liveness: the process answers (200)
/health/ready  readiness: one real query against the database (200, or 503 with the reason)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import db
import settings
from release import RELEASE

StartResponse = Callable[..., Any]


def _send(start_response: StartResponse, status: str, body: dict[str, Any]) -> Iterable[bytes]:
    # Keys in the order given: the reason first, so a probe that shows only the start of a body shows it.
    data = (json.dumps(body) + "\n").encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Cache-Control", "no-store")],
    )
    return [data]


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Answer the three routes; 404 for anything else, 405 for anything but GET/HEAD."""
    path = environ.get("PATH_INFO", "/")
    if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
        return _send(start_response, "405 Method Not Allowed", {"error": "GET only"})
    if path == "/":
        return _send(start_response, "200 OK", {"app": "demoapp", "release": RELEASE})
    if path == "/health":
        return _send(start_response, "200 OK", {"status": "alive", "release": RELEASE})
    if path == "/health/ready":
        ok, reason = db.check(settings.database_url())
        status = "200 OK" if ok else "503 Service Unavailable"
        return _send(start_response, status, {"reason": reason, "ready": ok, "release": RELEASE})
    return _send(start_response, "404 Not Found", {"error": f"no route {path}"})
