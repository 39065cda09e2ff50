"""Every reporting command's --json output, success and error paths, against ONE schema.

The schema is docs/json-envelope.schema.json (documented in docs/json.md).

The commands run through the CLI's entry point (CliRunner on ``unitctl.cli.app``) with the fake systemd backend;
stdout must be exactly one JSON object that the schema accepts, and its exit_code must be the process's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import test_apply_fake as fake
from test_apply_fake import URL, World, installed, unit_text
from typer.testing import CliRunner

from unitctl.commands import apply as apply_command
from unitctl.commands import edges as command_edges
from unitctl.commands.report import REPORTING, Outcome
from unitctl.errors import ExitCode

# The fake-backend world of the apply tests, and its autouse per-test lock directory.
world = fake.world
lock_dir = fake.lock_dir

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "json-envelope.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())

# A real JSON Schema validator (the draft the schema names), not a hand-written subset of one.
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def problems(value: Any, schema: dict[str, Any] = SCHEMA) -> list[str]:
    """Return what the schema rejects in ``value``, one line each (empty: valid)."""
    validator = VALIDATOR if schema is SCHEMA else jsonschema.Draft202012Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in validator.iter_errors(value)]


def envelope_of(res: Any) -> dict[str, Any]:
    """Return the one JSON object on stdout, checked against the schema and the process's exit code."""
    data = json.loads(res.stdout)  # one document: anything else on stdout fails here
    assert isinstance(data, dict)
    assert list(problems(data, SCHEMA)) == [], (data, res.stderr)
    assert data["exit_code"] == res.exit_code, (data, res.stderr)
    if res.exit_code >= ExitCode.USAGE:  # the error is also the one line on stderr, as without --json
        assert res.stderr.count("unitctl: error: ") == 1 and data["message"] in res.stderr, res.stderr
    return data


@pytest.fixture
def cli(world: World, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    monkeypatch.setattr(command_edges, "real_edges", lambda name: world.edges())
    monkeypatch.setattr(apply_command, "DEFAULT_UNIT_DIR", world.units)
    monkeypatch.chdir(world.tmp)
    runner = CliRunner()
    from unitctl.cli import app

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args))

    return invoke


def _apply(world: World, cli: Callable[..., Any], *extra: str) -> dict[str, Any]:
    args = ("--guarded", "--repo", str(world.repo), "--ready-url", URL, "--history-dir", str(world.hist))
    return envelope_of(cli("apply", "app", *args, "--json", *extra))


def test_the_schema_rejects_what_it_forbids() -> None:
    good: dict[str, object] = {
        "schema_version": 1, "command": "status", "unit": None, "outcome": "usage-error", "exit_code": 2,
        "message": "m", "hint": None, "result": None,
    }  # fmt: skip
    assert list(problems(good, SCHEMA)) == []
    changes: tuple[dict[str, object], ...] = (
        {"exit_code": 0}, {"outcome": "fine"}, {"result": []}, {"extra": 1}, {"schema_version": 2},
        {"outcome": "ok", "exit_code": 0, "hint": "h"}, {"result": {"records": [{"time": "t"}]}, "command": "history"},
    )  # fmt: skip
    for change in changes:
        assert list(problems({**good, **change}, SCHEMA)), change
    missing = dict(good)
    del missing["hint"]
    assert list(problems(missing, SCHEMA))


def test_the_schema_and_the_code_name_the_same_outcomes_and_commands() -> None:
    assert SCHEMA["properties"]["outcome"]["enum"] == [o.value for o in Outcome]
    assert SCHEMA["properties"]["command"]["enum"] == list(REPORTING)


def test_apply_deployed_dry_run_nothing_to_do_and_rolled_back(world: World, cli: Callable[..., Any]) -> None:
    installed(world)
    dry = _apply(world, cli, "--dry-run")
    assert (dry["outcome"], dry["exit_code"], dry["unit"]) == ("changes-pending", 1, "app.service")
    done = _apply(world, cli)
    assert (done["outcome"], done["command"]) == ("deployed", "apply")
    assert done["result"]["record"]["to_rev"] == world.revs["v2"] and done["message"] == done["result"]["message"]
    again = _apply(world, cli)
    assert again["outcome"] == "nothing-to-do" and again["exit_code"] == 0
    # A release that never becomes ready: rolled back, and the result (its record) is still there.
    (world.repo / "app.py").write_text("V = 3\n")
    from gitcmd import commit

    commit(world.repo, {"app.py": "V = 3\n"}, "v3")
    world.answer_fn = lambda: 200 if world.head() == world.revs["v2"] else 503
    rolled = _apply(world, cli, "--ready-timeout", "3")
    assert (rolled["outcome"], rolled["exit_code"]) == ("rolled-back", 4)
    assert rolled["result"]["record"]["outcome"] == "rolled-back" and rolled["hint"] is None


def test_apply_and_rollback_errors(world: World, cli: Callable[..., Any]) -> None:
    no_url = envelope_of(cli("apply", "app", "--guarded", "--history-dir", str(world.hist), "--json"))
    assert (no_url["outcome"], no_url["unit"], no_url["result"]) == ("usage-error", "app.service", None)
    installed(world)
    refused = envelope_of(cli("rollback", "app", "--history-dir", str(world.hist), "--json"))
    assert (refused["outcome"], refused["command"]) == ("refused", "rollback")
    assert refused["hint"] == "see 'unitctl history'" and "no earlier good deploy" in refused["message"]


def test_rollback_deployed(world: World, cli: Callable[..., Any]) -> None:
    installed(world)
    _apply(world, cli)
    back = envelope_of(cli("rollback", "app", "--history-dir", str(world.hist), "--json"))
    assert (back["outcome"], back["command"]) == ("deployed", "rollback"), back
    assert back["result"]["record"]["to_rev"] == world.revs["v1"]


def test_status_and_history_with_prune(world: World, cli: Callable[..., Any]) -> None:
    hist = ("--history-dir", str(world.hist))
    installed(world)
    st = envelope_of(cli("status", "app", *hist, "--json"))
    assert st["outcome"] == "ok" and st["result"]["deployed_rev"] == world.revs["v1"] and st["result"]["ready"]
    nosuch = envelope_of(cli("status", "nosuch", *hist, "--json"))
    assert (nosuch["outcome"], nosuch["unit"]) == ("refused", "nosuch.service")
    _apply(world, cli)
    listed = envelope_of(cli("history", "app", *hist, "--json"))
    assert [r["outcome"] for r in listed["result"]["records"]] == ["ok", "ok"]
    dry = envelope_of(cli("history", "app", *hist, "--prune", "--keep", "1", "--dry-run", "--json"))
    assert dry["outcome"] in ("changes-pending", "nothing-to-do") and dry["result"]["dry_run"] is True
    pruned = envelope_of(cli("history", "app", *hist, "--prune", "--keep", "1", "--json"))
    assert pruned["result"]["removed"] == dry["result"]["removed"]
    bad = envelope_of(cli("history", "app", *hist, "--prune", "--json"))
    assert (bad["outcome"], bad["hint"], bad["unit"]) == ("usage-error", "add e.g. --keep 50", "app.service")
    # A unit that is named is in the envelope of an error found before the command ran.
    early = envelope_of(cli("apply", "app", "--app", "a:b", *hist, "--json"))
    assert (early["outcome"], early["unit"], early["hint"]) == ("usage-error", "app.service", "add --render")


def test_diff_and_verify(world: World, cli: Callable[..., Any], tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    installed_file = root / "etc/systemd/system/app.service"
    installed_file.write_bytes(unit_text())
    same = envelope_of(cli("diff", "app", "--root", str(root), "--unit-file", str(installed_file), "--json"))
    assert (same["outcome"], same["result"]["differs"]) == ("ok", False)
    changed = envelope_of(cli("diff", "app", "--root", str(root), "--workers", "3", "--json"))
    assert changed["outcome"] == "changes-pending" and "+ExecStart=" in changed["result"]["diff"]
    assert "hunter22" not in changed["result"]["diff"]  # secrets masked in the result too
    missing = envelope_of(cli("diff", "app", "--root", str(root), "--unit-file", "/nonexistent.service", "--json"))
    assert missing["outcome"] == "refused" and missing["unit"] == "app.service"
    broken = tmp_path / "broken.service"
    broken.write_text("[Service\nExecStart=/bin/true\n")
    bad = envelope_of(cli("verify", str(broken), "--offline", "--json"))
    assert bad["outcome"] == "refused" and bad["exit_code"] == ExitCode.REFUSED


@pytest.mark.parametrize(
    "argv",
    [
        ["apply", "app", "--json", "--bogus"],
        ["status", "--json", "--backend", "sideways"],
        ["diff", "--json"],
        ["history", "app", "--json", "--keep", "0", "--prune"],
        ["verify", "--json"],
    ],
)
def test_usage_errors_from_the_parser(argv: list[str], cli: Callable[..., Any]) -> None:
    data = envelope_of(cli(*argv))
    assert (data["outcome"], data["exit_code"], data["command"], data["unit"]) == ("usage-error", 2, argv[0], None)
    assert data["hint"] == f"see 'unitctl {argv[0]} --help'" and data["result"] is None


def test_without_json_a_usage_error_prints_nothing_on_stdout(cli: Callable[..., Any]) -> None:
    res = cli("apply", "app", "--bogus")
    assert res.exit_code == 2 and res.stdout == "" and res.stderr.startswith("unitctl: error: No such option")
