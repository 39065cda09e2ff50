"""unitctl deploy against real systemd, Gunicorn and git, its settings in the server's /etc/unitctl/unitctl.toml.

As the forced command runs it: only the service and the commit on the command line (plus --unit-file for the
admin's first deploy), the checkout, fetch, readiness URL, timeout, workers and history from [deploy] and
[deploy.SERVICE]; the checkout is a clone that must fetch each new commit from its origin.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from apphelpers import DeployedApp, http_get

from unitctl.commands.deploy import DEPLOY_SCHEMA
from unitctl.sandbox import Sandbox

pytestmark = pytest.mark.systemd

SERVER_TOML = "/etc/unitctl/unitctl.toml"


def test_deploy_takes_its_settings_from_the_servers_file(box: Sandbox, venv_bin: Path) -> None:
    app = DeployedApp(box, venv_bin, prefix="dep")
    v1 = app.repo.release("v1")
    checkout = f"{app.repo.root}/checkout"
    box.run(["git", "clone", "-q", app.repo.path, checkout], check=True)
    text = app.repo.unit(venv_bin, port=app.port, extra_args="--preload ")
    first = app.repo.write_unit_file(text.replace(f"WorkingDirectory={app.repo.path}", f"WorkingDirectory={checkout}"),
                                     "first")  # fmt: skip
    assert not box.exists(SERVER_TOML), "the server file is this test's"
    box.write_file(
        SERVER_TOML,
        # Another service's table and the common one: the service's own values win over [deploy].
        f'[deploy]\nready_timeout = 5\nworkers = 1\n\n[deploy."other-app"]\nrepo = "/nonexistent"\n\n'
        f'[deploy.{app.name}]\nrepo = "{checkout}"\nfetch = true\nready_url = "{app.url}/health/ready"\n'
        f'ready_timeout = 20\nworkers = 3\nhistory_dir = "{app.hist}"\n',
    )
    try:
        # The admin's first deploy: the unit file (rewritten: no --preload, 3 workers) and the commit.
        r = app.unitctl("deploy", app.name, "--unit-file", first, "--rev", v1)
        assert r.returncode == 0, r.stderr
        assert http_get(box, f"{app.url}/") == (200, "release v1\n")
        unit = box.read_file(app.unit_path).decode()
        assert "--workers 3" in unit and "--preload" not in unit, unit
        assert f"WorkingDirectory={checkout}" in unit

        # CI's deploys: the service and the commit only, as examples/server/deploy-demoapp sends them.
        v2 = app.repo.release("v2")
        assert box.run(["git", "-C", checkout, "cat-file", "-e", v2]).returncode != 0, "v2 must need a fetch"
        r = app.unitctl("deploy", app.name, "--rev", v2, "--summary-stdout")
        assert r.returncode == 0, r.stderr
        assert http_get(box, f"{app.url}/") == (200, "release v2\n")
        assert r.stdout.startswith(f"### ✅ unitctl deploy {app.unit}: deployed (exit 0)"), r.stdout
        assert f"| revision deployed | `{v2[:12]}` |" in r.stdout
        assert f"git fetch --tags origin in {checkout}" in r.stderr

        # A flag wins over the file: --no-fetch, and a commit the checkout does not have is refused.
        v3 = app.repo.release("v3")
        pid = box.unit_properties(app.unit, "MainPID")["MainPID"]
        r = app.unitctl("deploy", app.name, "--rev", v3, "--no-fetch")
        assert r.returncode == 3, r.stderr
        assert "git fetch" not in r.stderr and v3[:12] in r.stderr
        assert box.unit_properties(app.unit, "MainPID")["MainPID"] == pid
        assert http_get(box, f"{app.url}/") == (200, "release v2\n")

        # A release that does not import is refused by the guarded apply deploy runs; v2 keeps serving.
        v4 = app.repo.release("v4", broken_import=True)
        r = app.unitctl("deploy", app.name, "--rev", v4, "--summary-stdout")
        assert r.returncode == 3, r.stderr
        assert r.stdout.startswith(f"### ❌ unitctl deploy {app.unit}: refused, nothing changed (exit 3)"), r.stdout
        assert http_get(box, f"{app.url}/") == (200, "release v2\n")
        history = app.unitctl("history", app.name, "--history-dir", app.hist)
        assert history.stdout.count(" deploy ") >= 3, history.stdout

        # A typo in the server's file is a usage error naming it, before anything is asked.
        box.write_file(SERVER_TOML, f'[deploy.{app.name}]\nrepo = "{checkout}"\nready_timout = 20\n')
        r = app.unitctl("deploy", app.name, "--rev", v2)
        assert r.returncode == 2
        assert r.stderr.strip() == (
            f"unitctl: error: {SERVER_TOML}: unknown key 'ready_timout' in [deploy.{app.name}]; known keys: "
            + ", ".join(sorted(DEPLOY_SCHEMA))  # what [deploy] may hold, hooks included
        )
    finally:
        box.run(["rm", "-f", SERVER_TOML], check=True)
