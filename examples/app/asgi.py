"""The example app as ASGI, through FastAPI, served by Gunicorn with Uvicorn workers:

    gunicorn --worker-class uvicorn_worker.UvicornWorker asgi:app
    unitctl render --name demoapi --app asgi:app --worker-class uvicorn_worker.UvicornWorker ...

The same routes and the same readiness as wsgi.py: ``/`` the release, ``/health`` liveness, ``/health/ready``
one real query against the database (200, or 503 with the reason).
"""

from __future__ import annotations

from typing import Any

import db
import settings
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from release import RELEASE

app = FastAPI(title="demoapp", docs_url=None, redoc_url=None, openapi_url=None)
NO_STORE = {"Cache-Control": "no-store"}


@app.get("/")
def index() -> dict[str, Any]:
    return {"app": "demoapp", "release": RELEASE}


@app.get("/health")
def health() -> dict[str, Any]:
    return {"status": "alive", "release": RELEASE}


@app.get("/health/ready")
def ready() -> JSONResponse:
    # A plain def: FastAPI runs it in a thread, so a slow database never blocks the event loop.
    ok, reason = db.check(settings.database_url())
    body = {"reason": reason, "ready": ok, "release": RELEASE}  # the reason first, as in wsgi.py
    return JSONResponse(body, status_code=200 if ok else 503, headers=NO_STORE)
