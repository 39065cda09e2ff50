"""The supported server install, for real: build the wheel, install it with scripts/install-server.sh on a clean
sandboxed "server" (Debian's own Python, no network: every dependency from a local wheelhouse), then deploy the
example app's releases with the installed update_systemd_unit.sh and unitctl, from /, without the checkout: the
first deploy as the admin does it, the next ones as CI does, through the forced command
(examples/server/deploy-demoapp, settings in /etc/unitctl/unitctl.toml from examples/server/unitctl.toml) run by
an unprivileged deploy user with sudo, given only what the workflow sends.

The sandbox is one of its own: the install puts unitctl into /usr/local/bin, which other tests must not see.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from unitctl import __version__
from unitctl import sandbox as sandbox_mod
from unitctl.fleetdemo import build_wheelhouse

pytestmark = pytest.mark.systemd

REPO_ROOT = Path(__file__).resolve().parents[2]
MAKE_RELEASES = REPO_ROOT / "examples" / "app" / "make_releases.py"
FORCED = REPO_ROOT / "examples" / "server" / "deploy-demoapp"
SERVER_TOML = REPO_ROOT / "examples" / "server" / "unitctl.toml"
FORCED_AT = "/usr/local/sbin/deploy-inst"
WHEELHOUSE = "/srv/wheelhouse"
BASE = "/srv/server"
NAME = "demoapp-inst"
PORT = 8131
# What a root login shell on a server has: no venv, no checkout on PATH, no PYTHONPATH.
SERVER_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}


@pytest.fixture(scope="module")
def server(sandbox: sandbox_mod.Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sandbox_mod.Sandbox]:
    """A fresh sandbox with the wheelhouse copied in (the shared sandbox fixture proves the host can boot one)."""
    _, house = build_wheelhouse(tmp_path_factory.mktemp("install"))
    with sandbox_mod.booted(bind_ro=[REPO_ROOT, sys.prefix]) as box:
        for whl in house.glob("*.whl"):
            box.write_file(f"{WHEELHOUSE}/{whl.name}", whl.read_bytes())
        yield box


def _install(box: sandbox_mod.Sandbox) -> sandbox_mod.Result:
    (wheel,) = [p.name for p in box.host_path(WHEELHOUSE).glob("unitctl-*.whl")]
    return box.run(
        [
            "env", "-C", "/", "bash", str(REPO_ROOT / "scripts" / "install-server.sh"),
            "--wheel", f"{WHEELHOUSE}/{wheel}", "--find-links", WHEELHOUSE, "--offline", "--python", "/usr/bin/python3",
        ],
        env=SERVER_ENV,
        timeout=300,
    )  # fmt: skip


def _served(box: sandbox_mod.Sandbox) -> str:
    code = (
        f"import json, urllib.request; print(json.load(urllib.request.urlopen('http://127.0.0.1:{PORT}/'))['release'])"
    )
    r = box.run(["/usr/bin/python3", "-c", code])
    return r.stdout.strip() if r.ok else "no answer"


def _install_forced_command(box: sandbox_mod.Sandbox) -> None:
    """Install the example forced command and server settings for this app, a deploy user and its sudo rule."""
    text = FORCED.read_text()
    forced = [("SERVICE=demoapp", f"SERVICE={NAME}"), ("SELF=/usr/local/sbin/deploy-demoapp", f"SELF={FORCED_AT}")]
    for old, new in forced:
        assert old in text, f"{FORCED} no longer sets {old}: update this test"
        text = text.replace(old, new)
    box.write_file(FORCED_AT, text, mode=0o755)
    settings = SERVER_TOML.read_text()
    for old, new in [
        ("[deploy.demoapp]", f"[deploy.{NAME}]"),
        ('repo = "/srv/demoapp/app"', f'repo = "{BASE}/app"'),
        ("http://127.0.0.1:8000/health/ready", f"http://127.0.0.1:{PORT}/health/ready"),
        ("ready_timeout = 60", "ready_timeout = 10"),
        ('workers = "auto"', "workers = 2"),
    ]:
        assert old in settings, f"{SERVER_TOML} no longer sets {old}: update this test"
        settings = settings.replace(old, new)
    box.write_file("/etc/unitctl/unitctl.toml", settings, mode=0o644)
    box.run(["useradd", "--create-home", "--shell", "/bin/bash", "deploy"], check=True)
    box.write_file("/etc/sudoers.d/deploy-inst", f"deploy ALL=(root) NOPASSWD: {FORCED_AT}\n", mode=0o440)


def _as_ci(box: sandbox_mod.Sandbox, sent: str) -> sandbox_mod.Result:
    """Run the forced command as sshd would for the deploy key: as the deploy user, with what the workflow sent."""
    return box.run(
        ["runuser", "-u", "deploy", "--", "env", "-C", "/", f"SSH_ORIGINAL_COMMAND={sent}", FORCED_AT],
        env=SERVER_ENV,
        timeout=120,
    )


def _deploy(box: sandbox_mod.Sandbox, rev: str, *extra: str) -> sandbox_mod.Result:
    return box.run(
        [
            "env", "-C", "/", "update_systemd_unit.sh", NAME, "--repo", f"{BASE}/app", "--fetch", "--rev", rev,
            "--ready-url", f"http://127.0.0.1:{PORT}/health/ready", "--ready-timeout", "10", "--workers", "2", *extra,
        ],
        env=SERVER_ENV,
        timeout=120,
    )  # fmt: skip


def test_the_built_wheel_installs_on_a_server_and_deploys_without_the_checkout(server: sandbox_mod.Sandbox) -> None:
    box = server
    r = _install(box)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "(dbus)" in r.stdout, "libsystemd-dev and a compiler are on this server: the dbus extra is installed"
    # The links root's PATH and sudo's secure_path find, into the current venv.
    assert box.run(["readlink", "/usr/local/bin/unitctl"]).stdout.strip() == "/opt/unitctl/current/bin/unitctl"
    version = box.run(["env", "-C", "/", "unitctl", "--version"], env=SERVER_ENV)
    assert version.stdout.strip() == f"unitctl {__version__}", version.stderr
    # The installed copy runs, not the checkout's source; the demo and the sandbox stay in the checkout.
    py = "/opt/unitctl/current/bin/python"
    where = box.run(["env", "-C", "/", py, "-c", "import unitctl, pystemd; print(unitctl.__file__)"], env=SERVER_ENV)
    assert where.ok and where.stdout.startswith("/opt/unitctl/"), where.stdout + where.stderr
    assert not box.run(["env", "-C", "/", py, "-c", "import unitctl.demo"], env=SERVER_ENV).ok
    assert not box.run(["env", "-C", "/", py, "-c", "import unitctl.sandbox"], env=SERVER_ENV).ok

    # The example app, as a server has it: a checkout cloned at v1 from an origin, its unit not installed yet.
    built = box.run(
        [
            f"{sys.prefix}/bin/python", str(MAKE_RELEASES), f"{BASE}/app", "--origin", f"{BASE}/origin", "--json",
            "--unit-out", f"{BASE}/{NAME}.service", "--venv", sys.prefix, "--port", str(PORT),
            "--database-url", f"sqlite:///{BASE}/data/app.db",
        ],
        check=True,
    )  # fmt: skip
    revs = {rel["tag"]: rel["rev"] for rel in json.loads(built.stdout)["releases"]}
    box.run(
        [f"{sys.prefix}/bin/python", f"{BASE}/app/initdb.py"],
        env={"DATABASE_URL": f"sqlite:///{BASE}/data/app.db"},
        check=True,
    )

    # The first deploy is the admin's (it installs the unit); CI deploys the next ones through the forced command.
    r = _deploy(box, revs["v1"], "--unit-file", f"{BASE}/{NAME}.service")
    assert r.returncode == 0, r.stderr
    assert _served(box) == "v1"
    _install_forced_command(box)
    r = _as_ci(box, revs["v2"])
    assert r.returncode == 0, r.stderr
    assert _served(box) == "v2"
    assert r.stderr.startswith(f"deploy: started {revs['v2']} on "), r.stderr
    assert r.stdout.startswith(f"### ✅ unitctl deploy {NAME}.service: deployed (exit 0)"), r.stdout
    r = _as_ci(box, revs["v3-broken-import"])
    assert r.returncode == 3, r.stderr
    assert _served(box) == "v2"
    # What the exit-5 hint tells a human to run with the same key.
    r = _as_ci(box, "status")
    assert r.returncode == 0, r.stderr
    assert f"{NAME}.service: loaded, active/running" in r.stdout
    # Anything but a commit or "status" is refused before anything runs as root beyond the check itself.
    pid = box.unit_properties(f"{NAME}.service", "MainPID")["MainPID"]
    for sent in ["", "main", f"--rev {revs['v2']}", f"{revs['v2']}; touch /srv/pwned", f"{revs['v2']} --build-cmd id"]:
        r = _as_ci(box, sent)
        assert r.returncode == 2, (sent, r.stderr)
        assert r.stderr.count("\n") == 1 and "send a 40-hex commit or 'status'" in r.stderr, r.stderr
    assert not box.exists("/srv/pwned")
    assert box.unit_properties(f"{NAME}.service", "MainPID")["MainPID"] == pid

    # An upgrade installs a new venv beside the old one and switches the link; unitctl keeps working.
    before = box.run(["readlink", "-f", "/opt/unitctl/current"], check=True).stdout.strip()
    r = _install(box)
    assert r.returncode == 0, r.stderr
    after = box.run(["readlink", "-f", "/opt/unitctl/current"], check=True).stdout.strip()
    assert after != before and box.exists(before), "the previous venv is kept for a manual switch back"
    r = _deploy(box, revs["v2"])
    assert r.returncode == 0 and "nothing to do" in r.stdout + r.stderr, r.stderr


def test_install_refuses_bad_arguments_with_one_line(server: sandbox_mod.Sandbox) -> None:
    script = str(REPO_ROOT / "scripts" / "install-server.sh")
    for args, needle in [
        (["--wheel", "/srv/nope.whl"], "/srv/nope.whl: no such wheel"),
        (["--offline", "--wheel", f"{REPO_ROOT}/pyproject.toml"], "is not a wheel"),
        (["--bogus"], "unknown argument '--bogus'"),
    ]:
        r = server.run(["env", "-C", "/", "bash", script, *args], env=SERVER_ENV)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
