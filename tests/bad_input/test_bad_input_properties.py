"""Property-based bad input, in-process (typer's CliRunner runs the same one-line error handler as the CLI)."""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path

import world
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from unitctl.cli import app

runner = CliRunner()
UNIT_ALPHABET = "[]=\\\n\r\t #;\"'-$%{}ServiceUnitExecStart/gunicorn wpreload:app0123456789\x00\ufeffé"


def invoke(args: list[str], cwd: Path | None = None) -> tuple[int, list[str], str]:
    """Run unitctl in-process; return the exit code, the error lines and stdout (any exception fails the test)."""
    with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    errors = [line for line in result.stderr.splitlines() if line.startswith("unitctl: error: ")]
    return result.exit_code, errors, result.stdout


def refused_with_one_line(code: int, errors: list[str], expected: set[int]) -> None:
    assert code in expected, (code, errors)
    assert len(errors) == 1 and "; " in errors[0], errors


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(st.binary(max_size=400), st.text(UNIT_ALPHABET, max_size=400).map(str.encode)))
def test_any_unit_bytes_are_rewritten_or_refused_with_one_line(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as t:
        unit = Path(t) / "app.service"
        unit.write_bytes(data)
        for args in (["rewrite", str(unit), "--workers", "3", "--check"], ["rewrite", str(unit), "--no-preload"]):
            code, errors, _ = invoke(args)
            if code in (0, 1):
                assert errors == []
            else:
                refused_with_one_line(code, errors, {2, 3})
        assert unit.read_bytes() == data


# A character no systemd unit name may contain, put somewhere in an otherwise fine name.
_BAD_CHARS = st.sampled_from(list("/ \t\n\x00$*?!'\"é€") + ["\udcff"])


@settings(max_examples=100, deadline=None)
@given(head=st.text("abc-_.:@", max_size=20), bad=_BAD_CHARS, tail=st.text("abc-_.", max_size=20), huge=st.booleans())
def test_invalid_unit_names_are_usage_errors(head: str, bad: str, tail: str, huge: bool) -> None:
    name = ("a" * 300 if huge else head) + ("" if huge else bad) + tail
    with tempfile.TemporaryDirectory() as t:
        before = world.snapshot(Path(t))
        code, errors, stdout = invoke(["history", "--history-dir", t, "--", name])
        refused_with_one_line(code, errors, {2})
        assert "is not a valid systemd unit name" in errors[0]
        assert stdout == "" and world.snapshot(Path(t)) == before


_NOT_SECONDS = st.one_of(
    st.floats(max_value=0.0),  # 0, -0, negatives, -inf (and nan: allow_nan defaults on when no bound excludes it)
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0]),
    st.integers(max_value=0).map(float),
)


def _toml_float(x: float) -> str:
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf") if math.isinf(x) else repr(x)


@settings(max_examples=100, deadline=None)
@given(x=_NOT_SECONDS, flag=st.sampled_from(["--ready-timeout", "--ready-interval"]))
def test_seconds_that_are_not_finite_and_positive_are_refused_from_flags_and_toml(x: float, flag: str) -> None:
    with tempfile.TemporaryDirectory() as t:
        work = Path(t)
        before = world.snapshot(work)
        code, errors, _ = invoke(["apply", "app", f"{flag}={x!r}", "--history-dir", t])
        refused_with_one_line(code, errors, {2})
        assert f"{flag} must be a finite number above 0" in errors[0]
        key = flag[2:].replace("-", "_")
        (work / "unitctl.toml").write_text(f"[apply]\n{key} = {_toml_float(x)}\n")
        code, errors, _ = invoke(["apply", "app", "--history-dir", t], cwd=work)
        refused_with_one_line(code, errors, {2})
        assert f"{key} in [apply] must be a finite number above 0" in errors[0]
        (work / "unitctl.toml").unlink()
        assert world.snapshot(work) == before


@settings(max_examples=50, deadline=None)
@given(x=st.floats(min_value=1e-6, max_value=1e12, exclude_min=False))
def test_finite_positive_seconds_pass_the_check(x: float) -> None:
    # A later check (a guarded apply without a readiness URL) fails instead: the number itself was accepted.
    code, errors, _ = invoke(
        ["apply", "app", f"--ready-timeout={x!r}", "--guarded", "--backend=systemctl", "--history-dir=/nonexistent"]
    )
    refused_with_one_line(code, errors, {2})
    assert "needs a readiness URL" in errors[0]
