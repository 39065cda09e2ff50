"""The checkout in real deploys: owned by the service user, dirtied by the service, torn by kill -9.

unitctl and update_systemd_unit.sh run as root inside the sandbox against a real systemd, Gunicorn
and git. Checked: programs the service user planted in its checkout never run as uid 0; the dirt a
failed release leaves never blocks its rollback, while local data a deploy would lose is refused up
front, named; a checkout killed half-way is repaired by the next apply.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest
from apphelpers import APP_USER, AppRepo, http_get

from unitctl.sandbox import Result, Sandbox

pytestmark = pytest.mark.systemd

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "update_systemd_unit.sh"
TAG = sys.implementation.cache_tag
_ports = itertools.count(18700)


class App:
    """One app under test whose checkout belongs to the service user (as on a server)."""

    def __init__(self, box: Sandbox, venv_bin: Path) -> None:
        self.box, self.venv_bin = box, venv_bin
        self.name = f"gitapp-{uuid.uuid4().hex[:8]}"
        self.port = next(_ports)
        self.origin = AppRepo.create(box, self.name)  # /srv/NAME/repo, commits made as root
        self.path = f"{self.origin.root}/app"  # the checkout the unit runs from
        self.hist = f"{self.origin.root}/hist"
        self.url = f"http://127.0.0.1:{self.port}"

    def clone(self) -> None:
        self.box.run(["git", "clone", "-q", self.origin.path, self.path], check=True)

    def give_to_service_user(self, *paths: str) -> None:
        self.box.run(["chown", "-R", f"{APP_USER}:{APP_USER}", *paths], check=True)

    def as_user(self, *argv: str) -> Result:
        return self.box.run(["runuser", "-u", APP_USER, "--", *argv])

    def git(self, *args: str) -> str:
        """Run git in the checkout as its owner (root would be refused: dubious ownership)."""
        res = self.as_user("git", "-C", self.path, *args)
        assert res.ok, res.stderr
        return res.stdout

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def unit_file(self) -> str:
        text = self.origin.unit(self.venv_bin, port=self.port)
        text = text.replace(f"WorkingDirectory={self.origin.path}", f"WorkingDirectory={self.path}")
        return self.origin.write_unit_file(text, "v1")

    def apply(self, rev: str, *args: str, timeout: float = 8) -> Result:
        return self.box.run(self.apply_argv(rev, *args, timeout=timeout), timeout=timeout * 3 + 120)

    def apply_argv(self, rev: str, *args: str, timeout: float = 8) -> list[str]:
        return [
            "env", "-C", "/srv", str(self.venv_bin / "unitctl"), "apply", self.name, "--guarded", "--repo", self.path,
            "--rev", rev, "--ready-url", f"{self.url}/health/ready", "--ready-timeout", str(timeout),
            "--ready-interval", "0.2", "--history-dir", self.hist, *args,
        ]  # fmt: skip

    def served(self) -> str:
        status, body = http_get(self.box, f"{self.url}/")
        return body.strip() if status == 200 else f"HTTP {status}: {body}"

    def main_pid(self) -> str:
        return self.box.unit_properties(f"{self.name}.service", "MainPID")["MainPID"]

    def tracked_changes(self) -> list[str]:
        return self.git("status", "--porcelain", "--untracked-files=no").splitlines()


def test_programs_the_service_user_planted_in_its_checkout_never_run_as_root(box: Sandbox, venv_bin: Path) -> None:
    app = App(box, venv_bin)
    v1 = app.origin.release("v1")
    app.clone()
    v2 = app.origin.release("v2")
    out, bin_ = f"{app.origin.root}/pwned", f"{app.origin.root}/bin"
    # What a compromised app writes into its own checkout: every program git could run for it.
    planted = {
        "post-checkout": "exit 0", "reference-transaction": "exit 0", "post-index-change": "exit 0",
        "fsmonitor": "exit 0", "smudge": "exec cat", "clean": "exec cat", "textconv": 'cat "$1"',
        "external": "exit 0", "pager": "exec cat", "askpass": "exit 1", "credential": "exit 0",
        "uploadpack": 'exec git-upload-pack "$@"', "ssh": "exit 1",
    }  # fmt: skip
    for name, tail in planted.items():
        box.write_file(f"{bin_}/{name}", f"#!/bin/sh\nid -u > {out}/{name}\n{tail}\n", mode=0o755)
    box.run(["mkdir", "-p", out], check=True)
    for hook in ("post-checkout", "reference-transaction", "post-index-change"):
        box.run(["ln", "-s", f"{bin_}/{hook}", f"{app.path}/.git/hooks/{hook}"], check=True)
    config = {
        "core.fsmonitor": "fsmonitor", "filter.evil.smudge": "smudge", "filter.evil.clean": "clean",
        "diff.evil.textconv": "textconv", "diff.external": "external", "core.pager": "pager",
        "credential.helper": "credential", "core.askPass": "askpass", "remote.origin.uploadpack": "uploadpack",
        "core.sshCommand": "ssh", "remote.evil.url": "ssh://git@unitctl.invalid/evil.git",
    }  # fmt: skip
    for key, prog in config.items():
        value = prog if key.endswith(".url") else f"{bin_}/{prog}"
        box.run(["git", "config", "--file", f"{app.path}/.git/config", key, value], check=True)
    box.write_file(f"{app.path}/.git/info/attributes", "* filter=evil diff=evil\n")
    # The service user owns its checkout (and the origin it fetches from: upload-pack runs as that user).
    app.give_to_service_user(app.path, app.origin.path, out)
    assert box.run(["git", "-C", app.path, "status"]).returncode != 0, "git as root refuses this checkout"

    # First deploy of v1, then v2 with --fetch: the script and unitctl run as root.
    common = [
        "--repo", app.path, "--ready-url", f"{app.url}/health/ready", "--ready-timeout", "8",
        "--unitctl", str(venv_bin / "unitctl"), f"--history-dir={app.hist}",
    ]  # fmt: skip
    r = box.run(["bash", str(SCRIPT), app.name, *common, "--rev", v1, "--unit-file", app.unit_file()], timeout=120)
    assert r.returncode == 0, r.stderr
    assert box.run(["git", "-C", app.path, "cat-file", "-e", v2]).returncode != 0, "v2 must need a fetch"
    r = box.run(["bash", str(SCRIPT), app.name, *common, "--fetch", "--rev", v2], timeout=120)
    assert r.returncode == 0, r.stderr
    assert app.served() == "release v2" and app.head() == v2
    owners = box.run(["stat", "-c", "%U", f"{app.path}/release.py", f"{app.path}/.git/index"], check=True).stdout
    assert owners.split() == [APP_USER, APP_USER], "what the checkout writes stays the service user's"
    r = box.run([str(venv_bin / "unitctl"), "fetch", app.path, "--remote", "evil"], timeout=60)
    assert r.returncode == 3 and "git fetch --quiet --tags -- evil failed" in r.stderr, r.stderr

    uid = box.run(["id", "-u", APP_USER], check=True).stdout.strip()
    ran = {p.name: p.read_text().strip() for p in box.host_path(out).iterdir()}
    assert "0" not in ran.values(), ran
    assert not {"post-checkout", "reference-transaction", "post-index-change", "fsmonitor"} & ran.keys(), ran
    assert {"smudge", "uploadpack", "ssh"} <= ran.keys() and set(ran.values()) == {uid}, ran

    # The control experiment: what unitctl did before (git as root, safe.directory=*) runs them as root.
    box.run(["git", "-c", "safe.directory=*", "-C", app.path, "status"], check=True)
    assert box.read_file(f"{out}/fsmonitor").decode().strip() == "0"


def test_the_dirt_a_failed_release_leaves_never_blocks_its_rollback(box: Sandbox, venv_bin: Path) -> None:
    app = App(box, venv_bin)
    pyc = f"__pycache__/release.{TAG}.pyc"
    # The project tracks bytecode, a state file, a script and a cache file (small projects do).
    v1 = app.origin.release(
        "v1", extra_files={"state.json": "{}\n", "run.sh": "echo hi\n", "cache.txt": "v1\n", pyc: "stale"}
    )
    app.origin.git("rm", "-q", "cache.txt")
    # v2 imports fine, dirties its checkout while it starts, and never becomes ready (its table is missing).
    dirty = (
        "import os, pathlib\n"
        "here = pathlib.Path(__file__).parent\n"
        "(here / 'state.json').write_text('{\"by\": \"v2\"}\\n')\n"
        "os.chmod(here / 'run.sh', 0o755)\n"
        "(here / 'cache.txt').write_text('v2 cache\\n')\n"
        "RELEASE = 'v2'\nTABLE = 'items_v2'\nREADY_AFTER = 0.0\n"
    )
    v2 = app.origin.release("v2", extra_files={"release.py": dirty, pyc: "stale too"})
    v3 = app.origin.release("v3", extra_files={"data.csv": "a,b\n"})
    app.clone()
    app.give_to_service_user(app.path)

    r = app.apply(v1, "--unit-file", app.unit_file())
    assert r.returncode == 0, r.stderr
    assert app.served() == "release v1"
    assert app.tracked_changes() == [f" M {pyc}"], "the service rewrote its tracked bytecode"

    r = app.apply(v2, "--no-canary")  # the canary would refuse it, dirtying only its own tree: test_canary_real.py
    assert r.returncode == 4, r.stderr  # it was 5: the rollback's checkout refused the dirt
    assert app.served() == "release v1" and app.head() == v1
    assert app.git("show", f"{v2}:release.py") == dirty
    assert box.read_file(f"{app.path}/state.json") == b"{}\n"
    assert box.read_file(f"{app.path}/cache.txt") == b"v1\n"
    (saved,) = box.host_path(f"{app.path}/.git/unitctl/saved").glob(f"*-{v1[:12]}/cache.txt")
    assert saved.read_text() == "v2 cache\n", "what was in the rollback's way is kept, not deleted"
    assert box.host_path(f"{app.path}/run.sh").stat().st_mode & 0o111 == 0
    assert [c for c in app.tracked_changes() if not c.endswith(".pyc")] == []

    # Local data a deploy would lose is refused before anything changes, naming it.
    pid = app.main_pid()
    assert app.as_user("sh", "-c", f"echo edited >> {app.path}/state.json && chmod +x {app.path}/run.sh").ok
    r = app.apply(v3)
    assert r.returncode == 3, r.stderr
    assert "modified tracked files (run.sh: mode changed, state.json): a deploy or rollback would lose them" in (
        r.stderr
    )
    assert app.as_user("git", "-C", app.path, "checkout", "-q", "--", "state.json", "run.sh").ok
    assert app.as_user("sh", "-c", f"echo 'the server s own' > {app.path}/data.csv").ok
    r = app.apply(v3)
    assert r.returncode == 3, r.stderr
    assert "untracked files a target revision tracks (data.csv)" in r.stderr
    assert app.main_pid() == pid and app.head() == v1 and app.served() == "release v1"
    assert box.read_file(f"{app.path}/data.csv") == b"the server s own\n"


BIG = 1500


def _pids_with(*words: str) -> list[int]:
    """Return the pids (as the host sees them) whose command line contains every one of ``words``."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                argv = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if all(w in argv for w in words):
                pids.append(int(name))
    return pids


def test_a_checkout_killed_half_way_is_repaired_by_the_next_apply(box: Sandbox, venv_bin: Path) -> None:
    app = App(box, venv_bin)
    v1 = app.origin.release("v1")
    app.clone()
    app.give_to_service_user(app.path)
    assert app.apply(v1, "--unit-file", app.unit_file()).returncode == 0
    # v2 rewrites BIG files (~10 MB): a checkout long enough to be killed in the middle.
    for i in range(BIG):
        box.write_file(f"{app.origin.path}/pkg{i % 30}/m{i:04}.py", f"V = 2\n{'x = 1' + chr(10)}" * 1000)
    app.origin.git("add", "-A")
    v2 = app.origin.release("v2")
    box.run(["chown", "-R", f"{APP_USER}:{APP_USER}", app.origin.path], check=True)
    app.git("fetch", "-q", "origin")

    proc = box.popen(app.apply_argv(v2))
    lock = box.host_path(f"{app.path}/.git/index.lock")
    first = box.host_path(f"{app.path}/pkg0/m0000.py")
    try:
        while proc.poll() is None and not (lock.exists() and first.exists()):
            time.sleep(0.001)
        # Found from the host's /proc (fast: git must still be writing), killed by pid.
        gits = _pids_with("git", "checkout", v2)
        unitctls = _pids_with("unitctl", f"apply {app.name} ")
        assert gits and unitctls, (gits, unitctls)
        for victim in [*unitctls, *gits]:
            os.kill(victim, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert lock.exists() and app.head() == v1, "kill -9 of unitctl and its git left a torn checkout"
    assert "?? pkg0/" in app.git("status", "--porcelain"), "files of v2 were already written"

    r = app.apply(v2)
    assert r.returncode == 0, r.stderr
    # v2 answers: the repaired tree was switched and the service took it (a restart, or with --strategy auto's
    # HUP new workers under the same master: the dead deploy never reached its restart, so the master is v1's).
    assert app.served() == "release v2" and app.head() == v2
    assert app.git("status", "--porcelain") in ("", "?? __pycache__/\n") and not lock.exists()
    assert app.git("for-each-ref", "refs/unitctl") == ""
