"""The CLI's contract: help, version, one error line and the exit code that goes with it, fast start."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from unitctl import __version__, cli
from unitctl.errors import (
    ExitCode,
    GitStateError,
    LockHeldError,
    RefusedError,
    RollbackFailedError,
    RolledBackError,
    UnitctlError,
    UsageError,
)

runner = CliRunner()
COMMANDS = ["render", "rewrite", "diff", "verify", "apply", "rollback", "status", "history"]


def test_help_lists_every_command_and_the_exit_codes() -> None:
    result = runner.invoke(cli.app, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for command in COMMANDS:
        assert command in result.output
    assert "4 rolled back" in result.output


def test_version() -> None:
    result = runner.invoke(cli.app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"unitctl {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(cli.app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = runner.invoke(cli.app, ["deploy-everything"])
    assert result.exit_code == ExitCode.USAGE, result.output


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("bad flag"), 2),
        (GitStateError("tree is dirty"), 3),
        (LockHeldError("held by pid 1"), 3),
        (RolledBackError("rolled back"), 4),
        (RollbackFailedError("rollback failed"), 5),
    ],
)
def test_fail_prints_one_line_and_exits_with_the_errors_code(
    error: UnitctlError, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as exc:
        cli.fail(error)
    assert exc.value.exit_code == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("unitctl: error: ")


def test_hint_is_part_of_the_one_line() -> None:
    err = GitStateError("the tree at /srv/app has modified tracked files", hint="commit or stash them")
    assert str(err) == "the tree at /srv/app has modified tracked files; commit or stash them"
    assert isinstance(err, RefusedError)
    assert err.exit_code == ExitCode.REFUSED


def test_help_does_not_import_heavy_modules() -> None:
    """`unitctl --help` must start fast: jinja2, httpx, pystemd and rich load only in the commands that use them."""
    code = (
        "import sys, unitctl.cli\n"
        "heavy = [m for m in ('jinja2', 'httpx', 'pystemd', 'rich') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "unitctl", "--version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"unitctl {__version__}"
