"""Build a small Gunicorn app in a real git repository inside the sandbox, release by release.

The app serves ``release <label>`` on ``/`` and answers ``/health/ready`` only when its database
really works: it opens the sqlite file named by ``$APP_DB`` read-only, runs ``SELECT 1`` and checks
that the release's table exists. Releases are made of a few knobs:

    repo = AppRepo.create(box, "shop")                  # /srv/shop/repo, git init, db with table "items"
    v1 = repo.release("v1")                             # good
    v3 = repo.release("v3", broken_import=True)         # ImportError at import time (pydantic-style)
    v4 = repo.release("v4", table="items_v4")           # imports, never ready: its table is missing
    v5 = repo.release("v5", ready_after=4.0)            # ready only 4 s after the import
    unit = repo.unit(venv_bin, port=next_port())        # the systemd unit text for this app

``DeployedApp`` bundles one such app with the names a deploy of it uses (unit, port, URL, history directory)
and runs unitctl on it; test_apply_real's ``Deploy`` and the fault matrix's ``FaultApp`` build on it.

Everything lives in the container (under /srv, never /tmp: the host's /tmp is invisible there);
git commands run inside it with box.run. Reusable by the demo and other integration tests.
"""

from __future__ import annotations

import itertools
import json
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path

from unitctl.sandbox import Result, Sandbox

APP_USER = "unitctl-app"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "unitctl tests",
    "GIT_AUTHOR_EMAIL": "tests@unitctl.invalid",
    "GIT_COMMITTER_NAME": "unitctl tests",
    "GIT_COMMITTER_EMAIL": "tests@unitctl.invalid",
}

APP_PY = textwrap.dedent(
    '''\
    """A WSGI app whose readiness really depends on its database."""
    import os
    import sqlite3
    import time

    from release import READY_AFTER, RELEASE, TABLE

    STARTED = time.monotonic()


    def database_problem():
        path = os.environ.get("APP_DB", "")
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
            try:
                con.execute("SELECT 1").fetchone()
                row = con.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
                ).fetchone()
            finally:
                con.close()
        except sqlite3.Error as exc:
            return f"database unavailable ({path}): {exc}"
        if row is None:
            return f"table {TABLE} is missing in {path}"
        return None


    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/health/ready":
            problem = database_problem()
            if problem is None and time.monotonic() - STARTED < READY_AFTER:
                problem = "warming up"
            if problem is not None:
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [problem.encode() + b"\\n"]
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ready\\n"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"release {RELEASE}\\n".encode()]
    '''
)

BROKEN_COMPAT = (
    "raise ImportError(\"cannot import name 'BaseSettings' from 'pydantic' "
    '(BaseSettings has moved to the pydantic-settings package)")\n'
)


@dataclass
class AppRepo:
    """A git repository of the test app inside the sandbox."""

    box: Sandbox
    name: str
    root: str  # /srv/<name>
    path: str  # /srv/<name>/repo
    db: str  # /srv/<name>/data/app.sqlite

    @classmethod
    def create(cls, box: Sandbox, name: str, *, base: str = "/srv", table: str = "items") -> AppRepo:
        """Create the repository (empty, branch main), the app user and a database with ``table``."""
        root = f"{base}/{name}"
        repo = cls(box, name, root, f"{root}/repo", f"{root}/data/app.sqlite")
        ensure_user(box)
        box.run(["mkdir", "-p", repo.path, f"{root}/data"], check=True)
        repo.git("init", "-q", "-b", "main")
        repo.make_db(table)
        return repo

    def git(self, *args: str, check: bool = True) -> Result:
        """Run git in the repository inside the sandbox."""
        return self.box.run(["git", "-C", self.path, *args], env=GIT_ENV, check=check)

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").stdout.strip()

    def release(
        self,
        label: str,
        *,
        table: str = "items",
        ready_after: float = 0.0,
        broken_import: bool = False,
        extra_files: dict[str, str] | None = None,
    ) -> str:
        """Commit release ``label`` and return its full hash."""
        files = {
            "app.py": APP_PY,
            "release.py": (
                ("from pydantic_compat import BaseSettings  # noqa: F401\n" if broken_import else "")
                + f"RELEASE = {label!r}\nTABLE = {table!r}\nREADY_AFTER = {ready_after!r}\n"
            ),
            **(extra_files or {}),
        }
        if broken_import:
            files["pydantic_compat.py"] = BROKEN_COMPAT
        for rel, text in files.items():
            self.box.write_file(f"{self.path}/{rel}", text)
            self.git("add", rel)
        self.git("commit", "-q", "--allow-empty", "-m", f"release {label}")
        return self.head()

    def make_db(self, table: str = "items") -> None:
        """(Re)create the sqlite database with ``table`` in it."""
        code = (
            "import sqlite3, sys; con = sqlite3.connect(sys.argv[1]); "
            f"con.execute('CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY)'); con.commit(); con.close()"
        )
        self.box.run(["python3", "-c", code, self.db], check=True)
        self.box.run(["chmod", "0644", self.db], check=True)

    def unit(
        self,
        venv_bin: Path,
        *,
        port: int,
        bind: str | None = None,
        workers: int = 2,
        extra_args: str = "",
        env: dict[str, str] | None = None,
    ) -> str:
        """Return the systemd unit that serves this app on 127.0.0.1:``port`` as the app user."""
        environment = " ".join(f'"{k}={v}"' for k, v in {"APP_DB": self.db, **(env or {})}.items())
        return textwrap.dedent(
            f"""\
            [Unit]
            Description=unitctl test app {self.name}

            [Service]
            Type=notify
            User={APP_USER}
            Group={APP_USER}
            WorkingDirectory={self.path}
            Environment={environment}
            ExecStart={venv_bin}/gunicorn --bind {bind or f"127.0.0.1:{port}"} --workers {workers} \\
                --no-control-socket {extra_args}app:app
            ExecReload=/bin/kill -s HUP $MAINPID
            KillMode=mixed
            TimeoutStopSec=10

            [Install]
            WantedBy=multi-user.target
            """
        )

    def write_unit_file(self, text: str, label: str) -> str:
        """Put a candidate unit file next to the repo (not in it) and return its container path."""
        path = f"{self.root}/units/{label}/{self.name}.service"
        self.box.write_file(path, text)
        return path


_ports = itertools.count(18300)


def next_port() -> int:
    """Return a port no earlier app of this run was given (one sandbox serves the whole session)."""
    return next(_ports)


class DeployedApp:
    """One app under test: its repository, unit name and file, port, URL, history directory; unitctl on it."""

    def __init__(self, box: Sandbox, venv_bin: Path, *, prefix: str) -> None:
        self.box = box
        self.venv_bin = venv_bin
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.unit = f"{self.name}.service"
        self.port = next_port()
        self.repo = AppRepo.create(box, self.name)
        self.hist = f"{self.repo.root}/hist"
        self.url = f"http://127.0.0.1:{self.port}"
        self.unit_path = f"/etc/systemd/system/{self.unit}"

    def unitctl_argv(self, *args: str) -> list[str]:
        """Return the command line that runs ``unitctl ARGS`` in the sandbox."""
        # env -C: run from /srv (no unitctl.toml there), whatever the host's cwd is.
        return ["env", "-C", "/srv", str(self.venv_bin / "unitctl"), *args]

    def unitctl(self, *args: str, timeout: float = 120) -> Result:
        """Run ``unitctl ARGS`` in the sandbox and return what it did."""
        return self.box.run(self.unitctl_argv(*args), timeout=timeout)


def ensure_user(box: Sandbox) -> None:
    """Create the unprivileged system user the test apps run as (once per sandbox)."""
    if not box.run(["id", "-u", APP_USER]).ok:
        box.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", APP_USER], check=True)
    # The venv's python may resolve into /root (pyenv); let the app user traverse it. This changes the
    # container's copy-on-write overlay only, never the host.
    python = box.run(["readlink", "-f", sys.executable], check=True).stdout.strip()
    if python.startswith("/root/"):
        box.run(["chmod", "o+x", "/root"], check=True)


def http_get(box: Sandbox, url: str, timeout: float = 3.0) -> tuple[int, str]:
    """GET ``url`` from inside the sandbox (its network is private); return (status, body) or (0, error)."""
    code = textwrap.dedent(
        """\
        import json, sys, urllib.error, urllib.request
        try:
            with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
                print(json.dumps([r.status, r.read().decode()]))
        except urllib.error.HTTPError as e:
            print(json.dumps([e.code, e.read().decode()]))
        except Exception as e:
            print(json.dumps([0, str(e)]))
        """
    )
    out = box.run(["python3", "-c", code, url, str(timeout)], timeout=timeout + 10, check=True).stdout
    status, body = json.loads(out)
    return int(status), str(body)


def bus_path(unit: str) -> str:
    """Return systemd's D-Bus object path of ``unit`` (every character but [A-Za-z0-9] escaped as _XX)."""
    return "/org/freedesktop/systemd1/unit/" + "".join(c if c.isalnum() else f"_{ord(c):02x}" for c in unit)
