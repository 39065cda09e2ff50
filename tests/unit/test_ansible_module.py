"""The Ansible module's mapping of unitctl's result to Ansible's conventions (ansible/plugins/modules/apply.py).

The module runs on the managed host with Ansible's Python, not unitctl's: it is imported here by path. Its input
is built with unitctl's own result classes, in both shapes a host may print: the ``--json`` envelope
(schema_version 1) and the bare result object of a unitctl from before it, read with the process's exit code.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from unitctl.deploy.model import ApplyResult
from unitctl.errors import ExitCode
from unitctl.history import Record

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_PATH = REPO_ROOT / "ansible" / "plugins" / "modules" / "apply.py"
OLD, NEW = "1" * 40, "2" * 40


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unitctl_ansible_apply", MODULE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mod = _load()

# What each documented exit code means for a host, as unitctl's history records it.
CASES = {
    0: ("ok", "demoapp.service: deployed 22222222 (ready after 0.4 s)", NEW),
    3: ("refused", "demoapp.service: refused: the import check failed: ImportError: BaseSettings", None),
    4: ("rolled-back", "demoapp.service: not ready within 10 s; rolled back to 11111111 (ready)", OLD),
    5: ("rollback-failed", "demoapp.service: not ready and the rollback failed; run 'unitctl status'", None),
}


def _result(code: int, *, outcome: str | None = None) -> dict[str, Any]:
    """Return unitctl's result object for an attempt that ended with ``code`` (its real class, its real to_json)."""
    rec_outcome, message, _ = CASES[code]
    record = Record(
        time="2026-11-30T19:00:00Z",
        unit="demoapp.service",
        command="apply",
        outcome=outcome or rec_outcome,  # type: ignore[arg-type]
        exit_code=code,
        from_rev=OLD,
        to_rev=NEW,
    )
    return ApplyResult(record=record, plan=None, message=message, exit_code=code).to_json()


ENVELOPE_OUTCOME = {0: "deployed", 3: "refused", 4: "rolled-back", 5: "rollback-failed"}


def _envelope(code: int, *, outcome: str | None = None, hint: str | None = None) -> str:
    payload = _result(code)
    return json.dumps(
        {
            "schema_version": 1,
            "command": "apply",
            "unit": "demoapp.service",
            "outcome": outcome or ENVELOPE_OUTCOME[code],
            "exit_code": code,
            "message": payload["message"],
            "hint": hint,
            "result": payload,
        }
    )


def _legacy(code: int, *, outcome: str | None = None) -> str:
    return json.dumps(_result(code, outcome=outcome), indent=2)  # unitctl printed it indented


SHAPES = pytest.mark.parametrize("shape", [_envelope, _legacy], ids=["envelope", "legacy"])


@SHAPES
def test_a_switch_is_changed_and_nothing_to_do_is_ok(shape: Any) -> None:
    deployed = mod.interpret(mod.parse_report(0, shape(0), ""))
    assert (deployed["changed"], deployed["failed"], deployed["outcome"]) == (True, False, "deployed")
    assert deployed["revision"] == NEW and deployed["previous_revision"] == OLD
    assert not deployed["rolled_back"] and not deployed["needs_human"] and not deployed["nothing_changed"]

    quiet = shape(0, outcome="nothing-to-do")
    nothing = mod.interpret(mod.parse_report(0, quiet, ""))
    assert (nothing["changed"], nothing["failed"], nothing["outcome"]) == (False, False, "nothing-to-do")
    assert nothing["nothing_changed"]


@SHAPES
@pytest.mark.parametrize(
    ("code", "outcome", "rolled_back", "needs_human", "nothing_changed", "revision"),
    [
        (3, "refused", False, False, True, OLD),
        (4, "rolled-back", True, False, False, OLD),
        (5, "rollback-failed", False, True, False, None),
    ],
)
def test_3_4_5_fail_with_the_message_and_tell_a_rollback_from_a_human(
    shape: Any, code: int, outcome: str, rolled_back: bool, needs_human: bool, nothing_changed: bool, revision: Any
) -> None:
    res = mod.interpret(mod.parse_report(code, shape(code), "unitctl: error: x; y"))
    assert res["failed"] and not res["changed"]
    assert res["outcome"] == outcome and res["exit_code"] == code
    flags = (res["rolled_back"], res["needs_human"], res["nothing_changed"])
    assert flags == (rolled_back, needs_human, nothing_changed)
    assert res["message"] == CASES[code][1]
    assert CASES[code][1] in res["msg"] and f"exit {code}" in res["msg"]
    assert res.get("revision") == revision, "after a refusal or a rollback the previous release serves"
    assert ("a human is needed" in res["msg"]) == needs_human


def test_the_envelope_gives_the_hint_and_marks_its_schema() -> None:
    res = mod.interpret(mod.parse_report(4, _envelope(4, hint="see 'unitctl history demoapp'"), ""))
    assert res["hint"] == "see 'unitctl history demoapp'" and res["msg"].endswith("; see 'unitctl history demoapp'")
    assert res["schema_version"] == 1
    assert res["result"]["record"]["to_rev"] == NEW, "the payload is passed on whole"
    assert mod.interpret(mod.parse_report(4, _legacy(4), ""))["schema_version"] is None


def test_the_process_exit_code_wins_over_a_json_that_disagrees() -> None:
    # The envelope promises they are equal; if a unitctl ever broke that, the host's real exit code is the truth.
    res = mod.interpret(mod.parse_report(4, _envelope(0), ""))
    assert res["failed"] and res["exit_code"] == 4 and res["rolled_back"] and res["outcome"] == "rolled-back"
    ok = mod.interpret(mod.parse_report(0, _envelope(4), ""))
    assert not ok["failed"] and ok["outcome"] == "deployed" and not ok["rolled_back"]


@pytest.mark.parametrize("code", [2, 3, 4, 5])
def test_a_legacy_error_without_a_result_reads_the_exit_code_and_the_error_line(code: int) -> None:
    stderr = "unitctl: capture 0.03s FAILED\nunitctl: error: demoapp.service: locked by pid 42; wait or run status\n"
    out = json.dumps({"unit": "demoapp.service", "command": "apply", "exit_code": code, "error": "locked"})
    res = mod.interpret(mod.parse_report(code, out, stderr))
    assert res["failed"] and res["exit_code"] == code and res["outcome"] == mod.OUTCOME_BY_EXIT[code]
    assert (res["message"], res["hint"]) == ("demoapp.service: locked by pid 42", "wait or run status")
    assert "result" not in res, "an error object is no result payload"


def test_usage_errors_print_no_json_before_the_envelope() -> None:
    stderr = "unitctl: error: No such option: --bogus; see 'unitctl apply --help'\n"
    res = mod.interpret(mod.parse_report(2, "", stderr))
    assert res["failed"] and res["outcome"] == "usage-error" and res["nothing_changed"]
    assert res["message"] == "No such option: --bogus" and res["hint"] == "see 'unitctl apply --help'"


@pytest.mark.parametrize("code", [1, 137, -9, 127])
def test_an_undocumented_or_unexpected_exit_fails_and_asks_for_a_human(code: int) -> None:
    # Exit 1 outside check mode: apply without --dry-run never exits 1; a killed unitctl left an unknown state.
    res = mod.interpret(mod.parse_report(code, "", "Killed\n"))
    assert res["failed"] and not res["changed"]
    if code == 1:
        assert res["outcome"] == "changes-pending"
    else:
        assert res["outcome"] == "unknown" and res["needs_human"] and res["message"] == "Killed"


@SHAPES
def test_check_mode_changes_pending_is_changed_not_failed(shape: Any) -> None:
    pending = _envelope(0, outcome="changes-pending") if shape is _envelope else _legacy(0, outcome="would-change")
    res = mod.interpret(mod.parse_report(1, pending, ""), check_mode=True)
    assert (res["changed"], res["failed"], res["outcome"]) == (True, False, "changes-pending")
    assert res["nothing_changed"]
    nothing = mod.interpret(mod.parse_report(0, shape(0, outcome="nothing-to-do"), ""), check_mode=True)
    assert (nothing["changed"], nothing["failed"]) == (False, False)
    refused = mod.interpret(mod.parse_report(3, shape(3), ""), check_mode=True)
    assert refused["failed"], "a dry run that finds the release broken fails in check mode too"


def test_every_documented_exit_code_has_an_outcome() -> None:
    assert set(mod.OUTCOME_BY_EXIT) == {int(c) for c in ExitCode}
    assert mod.OUTCOME_BY_EXIT[int(ExitCode.ROLLED_BACK)] == "rolled-back"
    assert mod.OUTCOME_BY_EXIT[int(ExitCode.NEEDS_HUMAN)] == "rollback-failed"


def _params(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "service": "demoapp", "rev": NEW, "command": "apply", "repo": "/srv/demoapp/app",
        "ready_url": "http://127.0.0.1:8000/health/ready", "ready_timeout": 10.0, "workers": "2", "unit_file": None,
        "strategy": None, "extra_args": ["--history-dir", "/var/lib/x"],
    }  # fmt: skip
    base.update(over)
    return base


def test_the_command_line_is_a_guarded_apply_with_options_as_single_words() -> None:
    assert mod.build_argv("/usr/local/bin/unitctl", _params()) == [
        "/usr/local/bin/unitctl", "apply", "demoapp", "--guarded", f"--rev={NEW}", "--repo=/srv/demoapp/app",
        "--ready-url=http://127.0.0.1:8000/health/ready", "--ready-timeout=10", "--workers=2",
        "--history-dir", "/var/lib/x", "--json",
    ]  # fmt: skip
    dry = mod.build_argv("unitctl", _params(), check_mode=True)
    assert dry[-2:] == ["--dry-run", "--json"]
    deploy = mod.build_argv("unitctl", _params(command="deploy", repo=None, ready_url=None, ready_timeout=2.5))
    assert deploy[:4] == ["unitctl", "deploy", "demoapp", f"--rev={NEW}"] and "--ready-timeout=2.5" in deploy
    assert "--guarded" not in deploy


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"rev": "--dry-run"}, "not a revision"),
        ({"service": "--help"}, "not a unit name"),
        ({"service": "demo app; id"}, "not a unit name"),
        ({"repo": None}, "repo is required"),
    ],
)
def test_bad_parameters_are_refused_before_unitctl_runs(over: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        mod.build_argv("unitctl", _params(**over))


def test_diff_mode_shows_the_revision_change_and_unitctls_masked_unit_diff() -> None:
    unit_diff = "--- demoapp.service (installed)\n+++ demoapp.service (desired)\n-  --workers 1\n+  --workers 2\n"
    text = mod.prepared_diff(unit_diff, _result(0))
    assert text.startswith(f"revision: {OLD} -> {NEW}\n") and text.endswith("+  --workers 2\n")
    assert mod.prepared_diff("", None) == ""
    assert mod.diff_argv("u", _params()) == ["u", "diff", "demoapp", "--workers=2"]


def test_the_module_runs_as_ansible_runs_it_against_the_real_unitctl(tmp_path: Path) -> None:
    """The whole module (AnsibleModule, argument spec, run_command) on a usage error of the real unitctl."""
    args = tmp_path / "args.json"
    args.write_text(
        json.dumps(
            {
                "ANSIBLE_MODULE_ARGS": {
                    "service": "demoapp", "rev": NEW, "repo": str(tmp_path), "ready_url": "http://127.0.0.1:9/ready",
                    "unitctl_path": str(Path(sys.prefix) / "bin" / "unitctl"), "extra_args": ["--no-such-option"],
                }
            }
        )
    )  # fmt: skip
    proc = subprocess.run([sys.executable, str(MODULE_PATH), str(args)], capture_output=True, text=True, check=False)
    res = json.loads(proc.stdout)
    assert proc.returncode == 1 and res["failed"], proc.stdout + proc.stderr
    assert res["outcome"] == "usage-error" and res["exit_code"] == 2 and res["nothing_changed"]
    assert "--no-such-option" in res["message"]
    assert res["cmd"][1:4] == ["apply", "demoapp", "--guarded"]
