"""Secrets and unitctl's own files, for real: a failing release that prints the values its unit gives it
(from an EnvironmentFile=, harmless-looking names, a URL password, a 4-character secret) through its import
error, its journal and its readiness answer. None of them may reach anything unitctl writes: stdout, stderr,
--json, history.jsonl, the journal excerpts it keeps, the GitHub step summary and annotations.
"""

from __future__ import annotations

import itertools
import json
import textwrap
import uuid
from pathlib import Path

import pytest
from apphelpers import AppRepo

from unitctl.sandbox import Result, Sandbox

pytestmark = pytest.mark.systemd

_ports = itertools.count(18700)

# Prints every value it was given (stderr goes to the journal), then fails the way the release asks:
# FAIL=import raises at import (with the values in the message), FAIL=ready answers 503 with them.
LEAKY_APP = textwrap.dedent(
    """\
    import os
    import sys

    from release import FAIL

    LEAK = "connecting with token {} upstream {} db {} salt {}".format(
        os.environ.get("API_TOKEN"), os.environ.get("UPSTREAM_ID"), os.environ.get("DATABASE_URL"),
        os.environ.get("SESSION_SALT"),
    )
    print("app: " + LEAK, file=sys.stderr, flush=True)
    if FAIL == "import":
        raise RuntimeError("cannot start: " + LEAK)


    def app(environ, start_response):
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [("not ready: " + LEAK + "\\n").encode()]
    """
)


def _unitctl(box: Sandbox, venv_bin: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return box.run(["env", "-C", "/srv", str(venv_bin / "unitctl"), *args], env=env, timeout=240)


def test_values_the_unit_gives_the_service_never_reach_anything_unitctl_writes(box: Sandbox, venv_bin: Path) -> None:
    name = f"leaky-{uuid.uuid4().hex[:8]}"
    port = next(_ports)
    repo = AppRepo.create(box, name)
    hist = f"{repo.root}/hist"
    secrets = {
        "API_TOKEN": f"tok_{uuid.uuid4().hex}",  # a secret name, from the EnvironmentFile=
        "UPSTREAM_ID": uuid.uuid4().hex,  # a harmless-looking name: masked by value all the same
        "DB_PASSWORD_IN_URL": f"pw-{uuid.uuid4().hex[:10]}",
        "SESSION_SALT": "k9Zq",  # 4 characters, a secret name (from Environment= in the unit)
    }
    env_file = f"{repo.root}/secret.env"
    box.write_file(
        env_file,
        f"# production secrets\nAPI_TOKEN={secrets['API_TOKEN']}\nUPSTREAM_ID='{secrets['UPSTREAM_ID']}'\n"
        f'DATABASE_URL="postgresql://app:{secrets["DB_PASSWORD_IN_URL"]}@db.internal/app"\n',
        mode=0o600,
    )
    text = repo.unit(venv_bin, port=port, env={"SESSION_SALT": secrets["SESSION_SALT"]})
    text = text.replace("\nExecStart=", f"\nEnvironmentFile={env_file}\nExecStart=", 1)
    assert text.count(f"EnvironmentFile={env_file}\n") == 1
    unit_file = repo.write_unit_file(text, "v1")
    url = f"http://127.0.0.1:{port}/health/ready"
    common = ["--guarded", "--repo", repo.path, "--ready-url", url, "--ready-interval", "0.2", "--history-dir", hist]

    repo.release("v1")
    first = _unitctl(box, venv_bin, "apply", name, "--unit-file", unit_file, "--ready-timeout", "30", *common)
    assert first.returncode == 0, first.stderr

    summary = f"{repo.root}/step-summary.md"
    box.write_file(summary, "")
    actions = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": summary}
    outputs: list[str] = []

    # 1. The release raises at import with the values in its message: the import check refuses it (exit 3).
    repo.release("v2", extra_files={"app.py": LEAKY_APP, "release.py": "FAIL = 'import'\n"})
    refused = _unitctl(box, venv_bin, "apply", name, "--json", "--ready-timeout", "10", *common, env=actions)
    assert refused.returncode == 3, refused.stderr
    assert "cannot start: connecting with token ****" in refused.stderr  # the app's words are kept, masked
    outputs += [refused.stdout, refused.stderr]

    # 2. It imports, prints the values to its journal and answers 503 with them: its canary refuses it (exit 3),
    v3 = repo.release("v3", extra_files={"app.py": LEAKY_APP, "release.py": "FAIL = 'ready'\n"})
    canaried = _unitctl(box, venv_bin, "apply", name, "--json", "--ready-timeout", "4", *common, env=actions)
    assert canaried.returncode == 3, canaried.stderr
    result = json.loads(canaried.stdout)["result"]
    assert any("app: connecting with token ****" in line for line in result["record"]["journal"]), result
    outputs += [canaried.stdout, canaried.stderr]
    # and without a canary the guard rolls it back after the switch (exit 4). The refusal put the checkout back at
    # the last good revision: the workflow checks v3 out again.
    repo.git("checkout", "-q", v3)
    rolled = _unitctl(box, venv_bin, "apply", name, "--json", "--ready-timeout", "4", "--no-canary", *common,
                      env=actions)  # fmt: skip
    assert rolled.returncode == 4, rolled.stderr
    envelope = json.loads(rolled.stdout)
    assert (envelope["outcome"], envelope["exit_code"]) == ("rolled-back", 4)
    result = envelope["result"]
    assert result["outcome"] == "rolled-back"
    assert any("app: connecting with token ****" in line for line in result["record"]["journal"]), result
    outputs += [rolled.stdout, rolled.stderr]

    records = json.loads(_unitctl(box, venv_bin, "history", name, "--json", "--history-dir", hist).stdout)["result"][
        "records"
    ]
    assert [r["outcome"] for r in records] == ["ok", "refused", "refused", "rolled-back"]
    assert "connecting with token ****" in records[1]["output"]
    status = _unitctl(box, venv_bin, "status", name, "--json", "--history-dir", hist)
    written = {
        "stdout/stderr": "\n".join(outputs),
        "history.jsonl": box.read_file(f"{hist}/history.jsonl").decode(),
        "history --json": json.dumps(records),
        "status": status.stdout + status.stderr,
        "step summary": box.read_file(summary).decode(),
    }
    assert "::error title=" in refused.stderr and "### ❌" in written["step summary"]
    for where, text in written.items():
        for what, secret in secrets.items():
            assert secret not in text, f"{what} leaked into {where}"
    # The release did print them: masking, not silence, kept them out.
    journal = box.run(["journalctl", "-u", f"{name}.service", "--no-pager", "-o", "cat"], check=True).stdout
    assert secrets["API_TOKEN"] in journal and secrets["SESSION_SALT"] in journal


def test_history_and_unit_copies_are_root_only(box: Sandbox, venv_bin: Path) -> None:
    name = f"modes-{uuid.uuid4().hex[:8]}"
    port = next(_ports)
    repo = AppRepo.create(box, name)
    hist = f"{repo.root}/hist"
    repo.release("v1")
    unit_file = repo.write_unit_file(repo.unit(venv_bin, port=port), "v1")
    # An existing history left world-readable (unitctl <= 0.1 wrote 0644) is tightened by the next write.
    box.run(["mkdir", "-p", f"{hist}/units"], check=True)
    box.write_file(f"{hist}/history.jsonl", "", mode=0o644)
    box.run(["chmod", "0755", hist, f"{hist}/units"], check=True)
    res = box.run(
        ["sh", "-c", 'umask 000 && exec "$@"', "sh", "env", "-C", "/srv", str(venv_bin / "unitctl"), "apply", name,
         "--unit-file", unit_file, "--guarded", "--repo", repo.path, "--ready-url", f"http://127.0.0.1:{port}/health/ready",
         "--ready-timeout", "30", "--history-dir", hist],
        timeout=240,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    stat = box.run(["stat", "-c", "%a %U:%G %n", hist, f"{hist}/history.jsonl", f"{hist}/units"], check=True)
    assert stat.stdout.splitlines() == [
        f"700 root:root {hist}",
        f"600 root:root {hist}/history.jsonl",
        f"700 root:root {hist}/units",
    ]
    copies = box.run(["sh", "-c", f'stat -c "%a %U" {hist}/units/*'], check=True).stdout.split("\n")
    assert [c for c in copies if c] == ["600 root"]
    # Another user can read neither the excerpts nor the unit copies.
    as_app = ["setpriv", "--reuid=unitctl-app", "--regid=unitctl-app", "--clear-groups"]
    for argv in (["cat", f"{hist}/history.jsonl"], ["ls", f"{hist}/units"]):
        peek = box.run([*as_app, *argv])
        assert peek.returncode != 0 and "Permission denied" in peek.stderr, (argv, peek.stdout)
