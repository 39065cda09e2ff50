"""GitHub Actions annotations and step summary: escaping, content, and that nothing happens outside Actions."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unitctl import github
from unitctl.deploy import ApplyResult
from unitctl.errors import LockHeldError, RolledBackError, UsageError
from unitctl.history import Phase, Record

ACTIONS = {"GITHUB_ACTIONS": "true"}


def _unescape(text: str, *, prop: bool = False) -> str:
    """Decode as the Actions runner does (its CommandStringConvertor), to check our escaping round-trips."""
    pairs = [("%0D", "\r"), ("%0A", "\n")] + ([("%3A", ":"), ("%2C", ",")] if prop else [])
    for enc, dec in pairs:
        text = text.replace(enc, dec)
    return text.replace("%25", "%")


def _rolled_back() -> ApplyResult:
    record = Record(
        time="2026-11-27T03:00:00.000000Z",
        unit="demoapp.service",
        command="apply",
        outcome="rolled-back",
        exit_code=4,
        from_rev="1111111111111111111111111111111111111111",
        to_rev="2222222222222222222222222222222222222222",
        rollback_source="history",
        ready_url="http://127.0.0.1:8000/health/ready",
        reason="the new release failed: 503 for 30s",
        phases=[
            Phase("capture", 0.05),
            Phase("pre-import", 0.81, True, "gunicorn --check-config wsgi:application"),
            Phase("switch", 0.4),
            Phase("guard", 30.02, False, "timeout: 503 Service Unavailable | not ready"),
            Phase("rollback", 0.6),
            Phase("rollback-guard", 1.1),
        ],
        journal=[
            "gunicorn[12]: [INFO] Booting worker",
            "app: connecting with DATABASE_PASSWORD=hunter2secret",
            "app: dsn postgresql://app:s3cr3tpw@db.internal/app",
            "a line with ``` backticks",
        ],
    )
    return ApplyResult(
        record=record,
        plan=None,
        message="demoapp.service: the new release failed: 503 for 30s; rolled back to the previous release 1111111",
        exit_code=4,
    )


def test_escape_data_follows_the_workflow_command_rules() -> None:
    assert github.escape_data("100% done\r\nnext") == "100%25 done%0D%0Anext"
    assert github.escape_property("a: b, c%\n") == "a%3A b%2C c%25%0A"


@given(st.text())
def test_escaping_round_trips_and_never_leaves_a_line_break(text: str) -> None:
    data = github.escape_data(text)
    prop = github.escape_property(text)
    assert "\n" not in data and "\r" not in data
    assert ":" not in prop and "," not in prop and "\n" not in prop
    assert _unescape(data) == text
    assert _unescape(prop, prop=True) == text


def test_annotation_puts_the_title_in_a_property() -> None:
    line = github.annotation("error", "line one\nline two", title="unitctl apply x.service: refused, nothing changed")
    assert line == "::error title=unitctl apply x.service%3A refused%2C nothing changed::line one%0Aline two"
    with pytest.raises(ValueError, match="annotation level"):
        github.annotation("fatal", "x")


def test_long_messages_keep_their_end(tmp_path: Path) -> None:
    line = github.annotation("error", "x" * 10000 + "THE CAUSE")
    assert line.endswith("THE CAUSE") and len(line) < 4100


def test_outside_actions_emit_writes_nothing(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    stream = io.StringIO()
    for env in ({}, {"GITHUB_ACTIONS": "false", "GITHUB_STEP_SUMMARY": str(summary)}):
        assert github.emit(_rolled_back(), env=env, stream=stream) is False
    assert stream.getvalue() == ""
    assert not summary.exists()


def test_a_rolled_back_deploy_gives_one_error_annotation_and_a_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    stream = io.StringIO()
    result = _rolled_back()
    err = RolledBackError(result.message)
    assert github.emit(result, error=err, env={**ACTIONS, "GITHUB_STEP_SUMMARY": str(summary)}, stream=stream)

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("::error title=unitctl apply demoapp.service%3A failed and rolled back::")
    assert _unescape(lines[0].split("::", 2)[2]) == result.message

    text = summary.read_text()
    assert text.startswith("# earlier step\n"), "the summary file is appended to, never replaced"
    assert "### ❌ unitctl apply demoapp.service: failed and rolled back (exit 4)" in text
    assert "| revision attempted | `222222222222` |" in text
    assert "| rollback target | `111111111111` (chosen from history) |" in text
    # Every phase with its timing, the failed one marked, a pipe in a detail escaped.
    assert "| guard | 30.02 | **FAILED** | timeout: 503 Service Unavailable \\| not ready |" in text
    assert "| pre-import | 0.81 | ok | gunicorn --check-config wsgi:application |" in text
    assert re.search(r"\| \*\*total\*\* \| \*\*32\.98\*\* \|", text)
    # Journal excerpt in a fence longer than any backtick run inside, secrets masked.
    assert "````text" in text and "a line with ``` backticks" in text
    assert "hunter2secret" not in text and "s3cr3tpw" not in text
    assert "DATABASE_PASSWORD=****" in text and "postgresql://app:****@db.internal/app" in text


def test_the_output_of_a_failed_check_is_shown_fenced_masked_and_only_on_failure() -> None:
    output = (
        "Traceback (most recent call last):\n```` inside\napp: connecting with DATABASE_PASSWORD=hunter2secret\n"
        "ImportError: no app"
    )
    failed = {"unit": "demoapp.service", "exit_code": 3, "error": "does not import", "record": {"output": output}}
    text = github.summary_markdown(failed)
    block = text[text.index("<details><summary>output of the failed check</summary>") :]
    assert "`````text\nTraceback (most recent call last):\n```` inside\n" in block
    assert "DATABASE_PASSWORD=****" in block and "hunter2secret" not in block
    assert block.endswith("ImportError: no app\n`````\n\n</details>\n\n")
    assert "output of the failed check" not in github.summary_markdown({**failed, "exit_code": 0})


def test_a_dict_result_works_like_the_object(tmp_path: Path) -> None:
    result = _rolled_back()
    assert github.summary_markdown(result.to_json()) == github.summary_markdown(result)
    assert github.annotation_lines(result.to_json()) == github.annotation_lines(result)


def test_the_json_envelope_works_like_the_object_it_wraps() -> None:
    from unitctl.commands.report import CommandResult, Outcome, result_envelope
    from unitctl.errors import RolledBackError

    result = _rolled_back()
    error = RolledBackError(result.message)
    printed = result_envelope(
        CommandResult("apply", "demoapp.service", Outcome.ROLLED_BACK, result.message, result.to_json(), error=error)
    )
    assert github.summary_markdown(printed) == github.summary_markdown(result, error=error)
    assert github.annotation_lines(printed) == github.annotation_lines(result, error=error)
    # An error before any attempt: the envelope alone (no result) still says what and what to do.
    usage = {"schema_version": 1, "command": "apply", "unit": None, "outcome": "usage-error", "exit_code": 2,
             "message": "which unit?", "hint": "pass NAME", "result": None}  # fmt: skip
    assert github.annotation_lines(usage) == ["::error title=unitctl apply ?%3A usage error%2C nothing changed::"
                                              "which unit?; pass NAME"]  # fmt: skip


def test_success_has_no_annotation_and_a_short_summary(tmp_path: Path) -> None:
    record = Record(
        time="t", unit="demoapp.service", command="apply", outcome="ok", exit_code=0, to_rev="3" * 40,
        phases=[Phase("capture", 0.1), Phase("guard", 1.25)],
    )  # fmt: skip
    result = ApplyResult(
        record=record, plan=None, message="demoapp.service: deployed at 333333333333 and ready", exit_code=0
    )
    summary = tmp_path / "s.md"
    stream = io.StringIO()
    github.emit(result, env={**ACTIONS, "GITHUB_STEP_SUMMARY": str(summary)}, stream=stream)
    assert stream.getvalue() == ""
    text = summary.read_text()
    assert "### ✅ unitctl apply demoapp.service: deployed (exit 0)" in text
    assert "| guard | 1.25 | ok |  |" in text
    assert "journal" not in text


def test_an_error_before_any_attempt_is_reported(tmp_path: Path) -> None:
    summary = tmp_path / "s.md"
    stream = io.StringIO()
    err = LockHeldError("demoapp.service: another apply is running (pid 42)", hint="wait for it")
    github.emit_error(err, unit="demoapp.service", env={**ACTIONS, "GITHUB_STEP_SUMMARY": str(summary)}, stream=stream)
    assert stream.getvalue().startswith("::error title=unitctl apply demoapp.service%3A refused%2C nothing changed::")
    assert "another apply is running (pid 42); wait for it" in summary.read_text()
    assert "(exit 3)" in summary.read_text()

    stream = io.StringIO()
    github.emit_error(UsageError("--ready-timeout must be positive"), unit=None, env=ACTIONS, stream=stream)
    assert "usage error" in _unescape(stream.getvalue(), prop=True)


def test_an_unwritable_summary_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    stream = io.StringIO()
    target = tmp_path / "no-such-dir" / "summary.md"
    assert github.emit(_rolled_back(), env={**ACTIONS, "GITHUB_STEP_SUMMARY": str(target)}, stream=stream)
    assert "::error" in stream.getvalue()
    assert f"cannot append to GITHUB_STEP_SUMMARY {target}" in stream.getvalue()


def test_an_unknown_result_type_is_refused() -> None:
    with pytest.raises(TypeError, match="ApplyResult"):
        github.summary_markdown(42)


def test_the_apply_command_reports_to_github_actions(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from unitctl.cli import app

    summary = tmp_path / "summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    args = ["apply", "demoapp", "--guarded", "--history-dir", str(tmp_path / "h"), "--backend", "systemctl"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert "::error title=unitctl apply demoapp.service%3A usage error" in result.output
    assert "needs a readiness URL" in summary.read_text()

    summary.unlink()
    result = CliRunner().invoke(app, args, env={"GITHUB_ACTIONS": "", "GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 2
    assert "::error" not in result.output and not summary.exists()
