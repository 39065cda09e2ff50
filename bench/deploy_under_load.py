"""Requests failed, and answered by a release that is not ready, while deploying under load: unitctl vs a baseline.

    .venv/bin/python bench/deploy_under_load.py [--repeat 3] [--clients 8] [--ready-timeout 10] [--scenario NAME ...]

Boots a systemd-nspawn sandbox (root needed). The app imports in 1.5 s, its unit is what `unitctl render` makes by
default, and 8 clients open a new connection per request on the sandbox's own loopback (bench/loadgen.py) for the
whole deploy. Each scenario runs with unitctl's defaults (`unitctl apply --guarded`, `unitctl rollback`) and with the
baseline unitctl replaces: `git checkout`, `systemctl restart`, poll the readiness URL, and on failure
`git reset --hard HEAD~1` + `systemctl restart`. It prints one table: scenario × tool → failed requests, requests
answered by a release that is not ready, the longest wait, the exit code (min/median/max over --repeat runs).
A benchmark, not a test: it asserts nothing. docs/canary-and-guard.md quotes its output with this command.

Scenarios: good (a good release), bad (imports, /health/ready 503 for ever), crash-import (ImportError),
crash-after-switch (imports, then its workers die a second later), rollback (back from a good release to the one
before it, by `unitctl rollback` or `git reset --hard HEAD~1`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from apphelpers import AppRepo, ensure_user  # noqa: E402

from unitctl import sandbox  # noqa: E402
from unitctl.sandbox import Sandbox  # noqa: E402

SCENARIOS = ("good", "bad", "crash-import", "crash-after-switch", "rollback")
TOOLS = ("unitctl", "baseline")
IMPORT_SECONDS = 1.5
_ports = itertools.count(19100)

RELEASE_PY = "import time\ntime.sleep({sleep})\n{extra}RELEASE = {label!r}\nTABLE = {table!r}\nREADY_AFTER = 0.0\n"
# Exit 3 is a worker that failed to boot: the Gunicorn master then halts and the whole service stops.
# Only in the live service: a crash after the switch is one no check before it (each runs in a transient unit
# of its own, unitctl-*) saw.
CRASH = (
    "import os, threading\n"
    "if 'unitctl-' not in open('/proc/self/cgroup').read():\n"
    "    threading.Timer(1.0, lambda: os._exit(3)).start()\n"
)
BROKEN = "raise ImportError(\"cannot import name 'BaseSettings' from 'pydantic'\")\n"

BASELINE = textwrap.dedent(
    """\
    #!/bin/bash
    # The deploy unitctl replaces: switch the code, restart, poll readiness, on failure go back one commit.
    set -u
    repo=$1 unit=$2 url=$3 timeout=$4 mode=$5
    poll() {
      python3 - "$url" "$timeout" <<'PY'
    import sys, time, urllib.request
    deadline = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200:
                sys.exit(0)
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit(1)
    PY
    }
    if [ "$mode" = rollback ]; then
      git -C "$repo" reset -q --hard HEAD~1 && systemctl restart "$unit" && poll && exit 0
      exit 5
    fi
    git -C "$repo" checkout -q next && systemctl restart "$unit" && poll && exit 0
    git -C "$repo" reset -q --hard HEAD~1
    systemctl restart "$unit"
    poll && exit 4
    exit 5
    """
)


@dataclass
class Run:
    scenario: str
    tool: str
    failed: int
    not_ready: int
    longest: float
    requests: int
    exit_code: int


def _release_py(label: str, *, table: str = "items", extra: str = "") -> str:
    return RELEASE_PY.format(sleep=IMPORT_SECONDS, extra=extra, label=label, table=table)


def _setup(box: Sandbox, venv_bin: Path, scenario: str, ready_timeout: float) -> dict[str, str]:
    """Create the app with v1 deployed and the scenario's v2 on branch 'next'; return its names and paths."""
    name = f"load-{uuid.uuid4().hex[:8]}"
    port = next(_ports)
    repo = AppRepo.create(box, name)
    repo.release("v1", extra_files={"release.py": _release_py("v1")})
    unit_file = f"{repo.root}/{name}.service"
    rendered = box.run(
        [
            str(venv_bin / "unitctl"), "render", "--name", name, "--app", "app:app", "--working-dir", repo.path,
            "--venv", str(venv_bin.parent), "--user", "unitctl-app", "--bind", f"127.0.0.1:{port}",
            "--env", f"APP_DB={repo.db}", "-o", unit_file,
        ],
        check=True,
    )  # fmt: skip
    del rendered
    ctx = {
        "name": name,
        "unit": f"{name}.service",
        "repo": repo.path,
        "hist": f"{repo.root}/hist",
        "url": f"http://127.0.0.1:{port}",
        "unit_file": unit_file,
        "root": repo.root,
        "timeout": str(ready_timeout),
    }
    first = box.run([*_apply(venv_bin, ctx), "--unit-file", unit_file], timeout=120)
    if first.returncode != 0:
        raise SystemExit(f"the first deploy failed: {first.stderr}")
    repo.git("checkout", "-q", "-b", "next")
    v2 = {
        "good": _release_py("v2"),
        "rollback": _release_py("v2"),
        "bad": _release_py("v2-bad", table="items_v2"),
        "crash-import": _release_py("v2-broken", extra=BROKEN),
        "crash-after-switch": _release_py("v2-crash", extra=CRASH),
    }[scenario]
    repo.release("v2", extra_files={"release.py": v2})
    repo.git("checkout", "-q", "main")
    return ctx


def _apply(venv_bin: Path, ctx: dict[str, str]) -> list[str]:
    return [
        "env", "-C", "/srv", str(venv_bin / "unitctl"), "apply", ctx["name"], "--guarded", "--repo", ctx["repo"],
        "--ready-url", f"{ctx['url']}/health/ready", "--ready-timeout", ctx["timeout"], "--history-dir", ctx["hist"],
    ]  # fmt: skip


def _deploy(box: Sandbox, venv_bin: Path, ctx: dict[str, str], scenario: str, tool: str) -> int:
    baseline = f"{ctx['root']}/baseline.sh"
    if tool == "baseline":
        box.write_file(baseline, BASELINE, mode=0o755)
        args = [ctx["repo"], ctx["unit"], f"{ctx['url']}/health/ready", ctx["timeout"]]
        if scenario == "rollback":
            return box.run([baseline, *args, "rollback"], timeout=300).returncode
        return box.run([baseline, *args, "deploy"], timeout=300).returncode
    if scenario == "rollback":
        hist = ["--history-dir", ctx["hist"]]
        return box.run(
            ["env", "-C", "/srv", str(venv_bin / "unitctl"), "rollback", ctx["name"], *hist], timeout=300
        ).returncode
    return box.run([*_apply(venv_bin, ctx), "--rev", "next"], timeout=300).returncode


def run_one(box: Sandbox, venv_bin: Path, scenario: str, tool: str, clients: int, ready_timeout: float) -> Run:
    ensure_user(box)
    ctx = _setup(box, venv_bin, scenario, ready_timeout)
    if scenario == "rollback":
        # First a good release, without load; the rollback from it is what is measured.
        box.write_file(f"{ctx['root']}/baseline.sh", BASELINE, mode=0o755)
        ready = f"{ctx['url']}/health/ready"
        warm = (
            [f"{ctx['root']}/baseline.sh", ctx["repo"], ctx["unit"], ready, ctx["timeout"], "deploy"]
            if tool == "baseline"
            else [*_apply(venv_bin, ctx), "--rev", "next"]
        )
        code = box.run(warm, timeout=300).returncode
        if code != 0:
            raise SystemExit(f"rollback scenario: deploying v2 failed with {code}")
    stop, out = f"{ctx['root']}/stop", f"{ctx['root']}/load.json"
    load = box.popen(
        ["python3", str(ROOT / "bench" / "loadgen.py"), f"{ctx['url']}/", stop, out, "--clients", str(clients)]
    )
    time.sleep(2.0)
    code = _deploy(box, venv_bin, ctx, scenario, tool)
    time.sleep(3.0)
    box.write_file(stop, "")
    load.wait(timeout=120)
    data = json.loads(box.read_file(out))
    records = data["records"]
    bad_labels = {"v2-bad", "v2-crash", "v2-broken"}
    box.systemctl("stop", ctx["unit"], timeout=60)
    return Run(
        scenario,
        tool,
        failed=sum(1 for r in records if r[2] != "200"),
        not_ready=sum(1 for r in records if r[2] == "200" and r[3] in bad_labels),
        longest=max((r[1] for r in records), default=0.0),
        requests=len(records),
        exit_code=code,
    )


def _spread(values: list[float], fmt: str = "{:g}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--ready-timeout", type=float, default=10.0)
    parser.add_argument("--scenario", choices=SCENARIOS, action="append")
    parser.add_argument("--tool", choices=TOOLS, action="append")
    args = parser.parse_args()
    venv_bin = Path(sys.prefix) / "bin"
    runs: list[Run] = []
    with sandbox.booted(bind_ro=[ROOT, sys.prefix]) as box:
        for scenario in args.scenario or SCENARIOS:
            for tool in args.tool or TOOLS:
                for _ in range(args.repeat):
                    run = run_one(box, venv_bin, scenario, tool, args.clients, args.ready_timeout)
                    runs.append(run)
                    print(f"{scenario:<19} {tool:<8} {run}", file=sys.stderr, flush=True)
    print(f"\n{args.clients} clients, a new connection per request; app import {IMPORT_SECONDS} s; "
          f"--ready-timeout {args.ready_timeout:g}; min / median / max over {args.repeat} run(s)\n")  # fmt: skip
    print("| scenario | tool | failed requests | answered by a not-ready release | longest wait (s) | exit "
          "| requests |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for scenario in args.scenario or SCENARIOS:
        for tool in args.tool or TOOLS:
            rs = [r for r in runs if r.scenario == scenario and r.tool == tool]
            print(
                f"| {scenario} | {tool} | {_spread([r.failed for r in rs])} | {_spread([r.not_ready for r in rs])} | "
                f"{_spread([r.longest for r in rs], '{:.2f}')} | {_spread([r.exit_code for r in rs])} | "
                f"{_spread([r.requests for r in rs])} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
