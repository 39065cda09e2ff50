"""The CLI's contract: help, version, one error line and the exit code that goes with it, fast start."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest
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
def test_every_unitctl_error_is_one_line_with_its_code(error: UnitctlError, code: int) -> None:
    assert cli.error_line(error) == (f"unitctl: error: {error}", code)


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/var/lib/unitctl/locks/app.service.lock"),
         "unitctl: error: /var/lib/unitctl/locks/app.service.lock: No space left on device (ENOSPC); free some space "
         "and retry"),
        (OSError(errno.EROFS, "Read-only file system", "/etc/systemd/system/app.service"),
         "unitctl: error: /etc/systemd/system/app.service: Read-only file system (EROFS); pick a writable place "
         "(e.g. --history-dir)"),
        (OSError(errno.EIO, "Input/output error"),
         "unitctl: error: Input/output error (EIO); check the file and retry"),
    ],
)  # fmt: skip
def test_os_errors_are_one_line_naming_the_file_exit_3(exc: OSError, line: str) -> None:
    assert cli.error_line(exc) == (line, 3)


def test_a_bug_is_not_dressed_up_as_an_error_line() -> None:
    assert cli.error_line(KeyError("x")) is None


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["rewrite", "--qqq"], "No such option: --qqq; see 'unitctl rewrite --help'"),
        (["rewrite"], "Missing argument 'file'; see 'unitctl rewrite --help'"),
        (["history", "app", "--limit", "many"], "Invalid value for '--limit'"),
        (["deploy-everything"], "No such command 'deploy-everything'; see 'unitctl --help'"),
    ],
)
def test_usage_errors_are_one_line_too(args: list[str], needle: str) -> None:
    result = runner.invoke(cli.app, args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("unitctl: error: "), result.stderr
    assert needle in result.stderr


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


def test_help_choices_metavars_and_defaults_come_from_the_constants() -> None:
    from unitctl.deploy.model import DEFAULT_READY_TIMEOUT, DEFAULT_STRATEGY, STRATEGIES
    from unitctl.history import DEFAULT_DIR
    from unitctl.systemd import BACKENDS

    out = " ".join(CliRunner().invoke(cli.app, ["apply", "--help"], terminal_width=200).output.split())
    assert f"--strategy <{'|'.join(STRATEGIES)}>" in out and f"[default: {DEFAULT_STRATEGY}]" in out
    assert f"--backend <{'|'.join(BACKENDS)}>" in out
    assert f"--ready-timeout SECONDS Seconds to wait for readiness [default: {DEFAULT_READY_TIMEOUT:g}]" in out
    assert f"[default: {DEFAULT_DIR}]" in out
    for option in ("--ready-url URL", "--repo DIR", "--unit-file FILE", "--workers N|auto", "--rev REV"):
        assert option in out


@pytest.mark.parametrize(
    ("command", "option"), [("apply", "--strategy"), ("apply", "--backend"), ("rollback", "--backend")]
)
def test_a_bad_choice_is_refused_by_the_parser_with_the_choices(command: str, option: str) -> None:
    res = CliRunner().invoke(cli.app, [command, "app", option, "sideways"])
    assert res.exit_code == 2
    assert f"Invalid value for '{option}'" in res.output and "'sideways' is not one of 'auto'" in res.output
