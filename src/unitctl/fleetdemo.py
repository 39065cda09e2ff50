"""Many servers, for real: three sandboxed hosts, unitctl installed by the Ansible role, rolled out by the playbook.

``bash scripts/demo-fleet.sh`` (``python -m unitctl.fleetdemo``) and tests/integration/test_fleet_real.py:

    build       the wheel and a wheelhouse (scripts/build.sh, pip wheel), as a server install takes them
    boot        three systemd-nspawn sandboxes, web1..web3, each with the example app's origin and checkout at v1
    install     ansible-playbook ansible/playbooks/install-unitctl.yml (role unitctl.deploy.server), offline
    roll out    ansible-playbook ansible/playbooks/rolling-deploy.yml, one host at a time, per release:
                v1 (first deploy, installs the unit), v2 (good: reaches all three), v4-db-down with --no-canary
                (fails readiness: rolled back on web1, the play stops, web2 and web3 keep v2), v3-broken-import
                (refused by the import check on web1: nothing changes anywhere)

Ansible reaches each host through the community.docker.nsenter connection (shipped in the ``ansible`` package) with
``ansible_nsenter_pid`` set to the sandbox's leader: it enters the container's namespaces, no network involved. The
hosts' apps listen on their own loopback; every probe runs inside the host. Excluded from the wheel like demo.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from unitctl.errors import SandboxError, UnitctlError

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTION = REPO_ROOT / "ansible"
PLAYBOOKS = COLLECTION / "playbooks"
MAKE_RELEASES = REPO_ROOT / "examples" / "app" / "make_releases.py"
HOSTS = ("web1", "web2", "web3")
BASE = "/srv/fleet"
NAME = "demoapp"
PORT = 8000
DB_URL = f"sqlite:///{BASE}/data/app.db"
READY_URL = f"http://127.0.0.1:{PORT}/health/ready"
LB_LOG = "/run/fleet-lb.log"
# One date for every commit: the three hosts build the same history, so one commit hash names a release everywhere.
GIT_DATES = {"GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}

# Stand-ins for the load balancer hooks: each records on the host when it was taken out and put back.
LB_OUT = f"""---
- name: Take the host out of the (recorded) load balancer
  ansible.builtin.shell: echo out >> {LB_LOG}
  changed_when: true
"""
LB_IN = f"""---
- name: Put the host back into the (recorded) load balancer
  ansible.builtin.shell: echo in >> {LB_LOG}
  changed_when: true
"""


@dataclass(frozen=True)
class Release:
    """One rollout of the demo and what it must do on each host: (exit code or None if not reached, release served)."""

    tag: str
    what: str
    expect: Mapping[str, tuple[int | None, str]]
    extra_args: tuple[str, ...] = ()
    first: bool = False


def _all(code: int, serves: str) -> dict[str, tuple[int | None, str]]:
    return dict.fromkeys(HOSTS, (code, serves))


ROLLOUTS = (
    Release("v1", "first deploy: the unit is installed on every host, one by one", _all(0, "v1"), first=True),
    Release("v2", "a good release reaches all three, one by one", _all(0, "v2")),
    Release(
        "v4-db-down",
        "never ready (the canary is off, so it is judged after the switch): rolled back on web1, the play stops",
        {"web1": (4, "v2"), "web2": (None, "v2"), "web3": (None, "v2")},
        extra_args=("--no-canary",),
    ),
    Release(
        "v3-broken-import",
        "refused by the import check on web1: nothing changes anywhere",
        {"web1": (3, "v2"), "web2": (None, "v2"), "web3": (None, "v2")},
    ),
)


@dataclass
class HostOutcome:
    """What one host reported and serves after a rollout."""

    exit_code: int | None  # None: the rollout stopped before this host
    outcome: str
    serving: str
    revision: str | None
    main_pid: str


@dataclass
class Rollout:
    """One ansible-playbook run and each host's outcome."""

    release: Release
    returncode: int
    output: str
    hosts: dict[str, HostOutcome] = field(default_factory=dict)
    seconds: float = 0.0

    def ok(self, revs: Mapping[str, str]) -> bool:
        """Return whether every host did what the release expects (and the playbook's exit says so)."""
        for host, (code, serves) in self.release.expect.items():
            got = self.hosts.get(host)
            if got is None or got.exit_code != code or got.serving != serves:
                return False
        failed = any(code != 0 for code, _ in self.release.expect.values())
        return (self.returncode != 0) == failed


def build_wheelhouse(out: Path) -> tuple[Path, Path]:
    """Build unitctl's wheel with scripts/build.sh and every dependency's wheel beside it; return (wheel, house)."""
    dist = out / "dist"
    subprocess.run(["bash", str(REPO_ROOT / "scripts" / "build.sh"), str(dist)], check=True, capture_output=True)
    (wheel,) = dist.glob("unitctl-*.whl")
    house = out / "wheelhouse"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(house), f"{wheel}[dbus]"],
        check=True,
        capture_output=True,
    )
    return wheel, house


class Fleet:
    """Three booted hosts with the example app, an inventory that reaches them with nsenter, ansible-playbook."""

    def __init__(self, boxes: Mapping[str, Any], workdir: Path) -> None:
        from unitctl.sandbox import Sandbox

        self.boxes: dict[str, Sandbox] = dict(boxes)
        self.workdir = workdir
        self.python = f"{sys.prefix}/bin/python"
        self.revs: dict[str, str] = {}
        self.installed_from: tuple[Path, Path] | None = None  # (wheel, wheelhouse) of the last install
        self.inventory = workdir / "inventory.ini"
        self.inventory.write_text(self.inventory_text())
        collections = workdir / "collections" / "ansible_collections" / "unitctl"
        collections.mkdir(parents=True, exist_ok=True)
        link = collections / "deploy"
        if not link.exists():
            link.symlink_to(COLLECTION)
        (workdir / "lb-out.yml").write_text(LB_OUT)
        (workdir / "lb-in.yml").write_text(LB_IN)
        (workdir / "tmp").mkdir(exist_ok=True)

    def inventory_text(self) -> str:
        """Return the inventory: one host per sandbox, entered through its leader's namespaces."""
        lines = ["[app]"]
        lines += [f"{host} ansible_nsenter_pid={box.leader}" for host, box in self.boxes.items()]
        lines += [
            "",
            "[app:vars]",
            "ansible_connection=community.docker.nsenter",
            "ansible_python_interpreter=/usr/bin/python3",
            "unitctl_become=false",
        ]
        return "\n".join(lines) + "\n"

    def env(self) -> dict[str, str]:
        """Return ansible-playbook's environment: this checkout's collection, no user config, no colour."""
        return {
            "PATH": f"{sys.prefix}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "ANSIBLE_CONFIG": str(self.workdir / "ansible.cfg"),  # absent: no ansible.cfg from anywhere else
            "ANSIBLE_COLLECTIONS_PATH": str(self.workdir / "collections"),
            "ANSIBLE_LOCAL_TEMP": str(self.workdir / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_HOST_KEY_CHECKING": "0",
        }

    def playbook(self, name: str, extra: Mapping[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``ansible-playbook`` on one of the collection's playbooks with ``extra`` as JSON extra vars."""
        argv = [
            f"{sys.prefix}/bin/ansible-playbook", "-i", str(self.inventory), str(PLAYBOOKS / name),
            "-e", json.dumps(dict(extra)), *args,
        ]  # fmt: skip
        return subprocess.run(
            argv, capture_output=True, text=True, env=self.env(), cwd=self.workdir, timeout=900, check=False
        )

    def build_apps(self) -> None:
        """Build the example app on every host: an origin with every release, the checkout at v1, its database."""
        for host, box in self.boxes.items():
            r = box.run(
                [
                    self.python, str(MAKE_RELEASES), f"{BASE}/app", "--origin", f"{BASE}/origin", "--json",
                    "--unit-out", f"{BASE}/{NAME}.service", "--venv", sys.prefix, "--port", str(PORT),
                    "--database-url", DB_URL,
                ],
                env=GIT_DATES,
                check=True,
            )  # fmt: skip
            revs = {rel["tag"]: rel["rev"] for rel in json.loads(r.stdout)["releases"]}
            if self.revs and revs != self.revs:
                raise SandboxError(f"{host} built other commits than the first host: {revs} != {self.revs}")
            self.revs = revs
            box.run([self.python, f"{BASE}/app/initdb.py"], env={"DATABASE_URL": DB_URL}, check=True)

    def install(self, wheel: Path, house: Path) -> subprocess.CompletedProcess[str]:
        """Install unitctl on every host with the role, from the wheelhouse (no index: the hosts are offline)."""
        self.installed_from = (wheel, house)
        return self.playbook(
            "install-unitctl.yml",
            {
                "server_wheel": str(wheel),
                "server_wheelhouse": str(house),
                "server_packages": [],
                "server_services": {NAME: {"repo": f"{BASE}/app", "ready_url": READY_URL, "ready_timeout": 10}},
            },
        )

    def rollout(self, release: Release, *, ready_timeout: float = 10) -> Rollout:
        """Roll ``release`` out with the example playbook; return every host's outcome and what it serves after."""
        summary = self.workdir / f"summary-{release.tag}.json"
        summary.unlink(missing_ok=True)
        extra: dict[str, Any] = {
            "unitctl_service": NAME,
            "unitctl_rev": self.revs[release.tag],
            "unitctl_repo": f"{BASE}/app",
            "unitctl_ready_url": READY_URL,
            "unitctl_ready_timeout": ready_timeout,
            "unitctl_fetch": True,
            "unitctl_extra_args": list(release.extra_args),
            "unitctl_lb_out_tasks": str(self.workdir / "lb-out.yml"),
            "unitctl_lb_in_tasks": str(self.workdir / "lb-in.yml"),
            "unitctl_summary_json": str(summary),
        }
        if release.first:
            extra["unitctl_unit_file"] = f"{BASE}/{NAME}.service"
        t0 = time.monotonic()
        proc = self.playbook("rolling-deploy.yml", extra)
        result = Rollout(release, proc.returncode, proc.stdout + proc.stderr, seconds=time.monotonic() - t0)
        reported: dict[str, Any] = json.loads(summary.read_text()) if summary.exists() else {}
        for host in self.boxes:
            rep = reported.get(host)
            result.hosts[host] = HostOutcome(
                exit_code=rep.get("exit_code") if rep else None,
                outcome=str(rep.get("outcome")) if rep else "not reached",
                serving=self.serving(host),
                revision=rep.get("revision") if rep else None,
                main_pid=self.main_pid(host),
            )
        return result

    def serving(self, host: str) -> str:
        """Ask the app on ``host`` (from inside it: its loopback) which release answers ``/``."""
        code = (
            "import json, urllib.request\n"
            f"print(json.load(urllib.request.urlopen('http://127.0.0.1:{PORT}/', timeout=5))['release'])"
        )
        r = self.boxes[host].run(["/usr/bin/python3", "-c", code], timeout=30)
        return r.stdout.strip() if r.ok else "nothing"

    def main_pid(self, host: str) -> str:
        return self.boxes[host].unit_properties(f"{NAME}.service", "MainPID").get("MainPID", "0")

    def lb_log(self, host: str) -> list[str]:
        """Return what the load balancer hooks recorded on ``host``, oldest first."""
        # /run is the container's own tmpfs, not in the overlay the host sees: read it from inside.
        r = self.boxes[host].run(["cat", LB_LOG])
        return r.stdout.split() if r.ok else []


@contextlib.contextmanager
def booted_fleet(workdir: Path, hosts: Sequence[str] = HOSTS) -> Iterator[Fleet]:
    """Boot one sandbox per host (torn down on every way out) and yield the Fleet over them."""
    from unitctl import sandbox

    with contextlib.ExitStack() as stack:
        boxes = {host: stack.enter_context(sandbox.booted(bind_ro=[REPO_ROOT, sys.prefix])) for host in hosts}
        yield Fleet(boxes, workdir)


def deploy_lines(output: str, width: int = 150) -> list[str]:
    """Return what the demo shows of a playbook run: each host's deploy result (a failure's msg) and the summary."""
    shown: list[str] = []
    task = ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK [") :].split("]", 1)[0]
            continue
        text = line.strip()
        if task == "Deploy the release, guarded" and text.startswith(("changed: [", "ok: [", "fatal: [")):
            head, _, body = text.partition(" => ")
            with contextlib.suppress(ValueError, AttributeError):
                head = f"{head} {json.loads(body).get('msg', '')}"
            shown.append(head)
        elif task == "Every host's outcome" and text.startswith('"') and not text.startswith('"msg"'):
            shown.append(text.strip('",'))
    return [s if len(s) <= width else s[: width - 1] + "…" for s in shown]


def table(rollouts: Sequence[Rollout], revs: Mapping[str, str]) -> list[str]:
    """Return the table release x host -> exit code, outcome, release served after (and whether it was expected)."""
    rows = [("release", "host", "exit", "outcome", "serves after", "result")]
    for ro in rollouts:
        for host, got in ro.hosts.items():
            code, serves = ro.release.expect[host]
            ok = got.exit_code == code and got.serving == serves
            rows.append(
                (
                    ro.release.tag,
                    host,
                    "-" if got.exit_code is None else str(got.exit_code),
                    got.outcome,
                    got.serving,
                    "ok" if ok else f"UNEXPECTED (wanted {'-' if code is None else code}, {serves})",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def run(*, out: TextIO, workdir: Path, ready_timeout: float) -> int:
    """Build, boot, install, roll every release out, print the table; return the exit code."""
    from unitctl import sandbox

    def say(text: str = "") -> None:
        out.write(text + "\n")
        out.flush()

    t0 = time.monotonic()
    say("unitctl fleet demo: building the wheel and a wheelhouse (scripts/build.sh, pip wheel)...")
    wheel, house = build_wheelhouse(workdir)
    say(f"   {wheel.name} and {len(list(house.glob('*.whl')))} wheels in {time.monotonic() - t0:.0f}s")
    rollouts: list[Rollout] = []
    names: list[str] = []
    say(f"== booting {len(HOSTS)} sandboxed hosts ({', '.join(HOSTS)})")
    with booted_fleet(workdir) as fleet:
        names = [box.name for box in fleet.boxes.values()]
        fleet.build_apps()
        say(f"   example app built on each: {BASE}/origin, checkout {BASE}/app at v1")
        say("== ansible-playbook ansible/playbooks/install-unitctl.yml (role unitctl.deploy.server, offline)")
        t1 = time.monotonic()
        installed = fleet.install(wheel, house)
        if installed.returncode != 0:
            say(installed.stdout[-3000:] + installed.stderr[-2000:])
            raise SandboxError("installing unitctl with the role failed (output above)")
        say(f"   installed on {len(HOSTS)} hosts in {time.monotonic() - t1:.0f}s")
        for release in ROLLOUTS:
            say(f"\n== {release.tag} ({fleet.revs[release.tag][:12]}): {release.what}")
            ro = fleet.rollout(release, ready_timeout=ready_timeout)
            rollouts.append(ro)
            for line in deploy_lines(ro.output):
                say(f"   {line}")
            say(f"   -> ansible-playbook exit {ro.returncode} in {ro.seconds:.0f}s")
        say("\n   tearing the hosts down...")
    left = [item for item in sandbox.leftovers() if any(n in item for n in names)]
    say("\n" + "\n".join(table(rollouts, fleet.revs)))
    good = len(rollouts) == len(ROLLOUTS) and all(ro.ok(fleet.revs) for ro in rollouts) and not left
    if left:
        say(f"\nthe sandboxes left things behind: {left}")
    say(f"\n{'OK' if good else 'FAILED'}: {sum(ro.ok(fleet.revs) for ro in rollouts)}/{len(ROLLOUTS)} rollouts as "
        f"expected ({time.monotonic() - t0:.0f}s in all)")  # fmt: skip
    return 0 if good else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run the fleet demo; one line on stderr and the error's exit code on failure."""
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m unitctl.fleetdemo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ready-timeout", type=float, default=10.0, help="seconds each deploy waits [10]")
    args = parser.parse_args(argv)
    if args.ready_timeout <= 0:
        parser.error("--ready-timeout must be positive")
    try:
        with tempfile.TemporaryDirectory(prefix="unitctl-fleet-") as tmp:
            return run(out=sys.stdout, workdir=Path(tmp), ready_timeout=args.ready_timeout)
    except KeyboardInterrupt:
        print("\nunitctl fleet demo: interrupted; the sandboxes were torn down", file=sys.stderr)
        return 130
    except (UnitctlError, subprocess.CalledProcessError) as err:
        print(f"unitctl fleet demo: error: {err}", file=sys.stderr)
        return int(getattr(err, "exit_code", 1))


if __name__ == "__main__":
    sys.exit(main())
