"""The typer layer: option declarations, one call per command, one error handler.

Keep this module thin. Each command imports the module that does its work inside the
function body, so that ``unitctl --help`` never pays for jinja2, httpx or pystemd.
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from unitctl import __version__
from unitctl.errors import ExitCode, NotImplementedYet, UnitctlError

app = typer.Typer(
    name="unitctl",
    help=(
        "Render, rewrite and safely deploy systemd units for Gunicorn-served Python apps.\n\n"
        "Exit codes: 0 ok · 1 changes pending · 2 usage · 3 refused, nothing changed · "
        "4 rolled back, previous release healthy · 5 rollback failed, a human is needed."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"unitctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Render, rewrite and safely deploy systemd units for Gunicorn-served Python apps."""


def fail(err: UnitctlError) -> NoReturn:
    """Print one line for ``err`` on stderr and exit with its code."""
    typer.echo(f"unitctl: error: {err}", err=True)
    raise typer.Exit(int(err.exit_code))


def _not_yet(command: str) -> NoReturn:
    fail(NotImplementedYet(f"'unitctl {command}' is not implemented in this version yet"))


@app.command()
def render() -> None:
    """Render a systemd unit for a Gunicorn app from a Jinja2 template."""
    _not_yet("render")


@app.command()
def rewrite() -> None:
    """Rewrite the Gunicorn command line inside an existing unit, changing nothing else."""
    _not_yet("rewrite")


@app.command()
def diff() -> None:
    """Show the difference between the installed unit and the desired one (exit 1 if they differ)."""
    _not_yet("diff")


@app.command()
def verify() -> None:
    """Check a candidate unit with systemd-analyze verify and unitctl's own checks."""
    _not_yet("verify")


@app.command()
def apply() -> None:
    """Install a unit and restart its service; with --guarded, roll back unless it becomes ready."""
    _not_yet("apply")


@app.command()
def rollback() -> None:
    """Switch a service back to its previous good deploy, guarded."""
    _not_yet("rollback")


@app.command()
def status() -> None:
    """Show a unit's state, deployed revision, last outcome and readiness."""
    _not_yet("status")


@app.command()
def history() -> None:
    """List the recorded deploys of a unit."""
    _not_yet("history")


def main() -> None:
    """Run the CLI; translate any UnitctlError that escapes a command into its exit code."""
    try:
        app()
    except UnitctlError as err:  # pragma: no cover - commands call fail() themselves
        typer.echo(f"unitctl: error: {err}", err=True)
        sys.exit(int(err.exit_code))
    except KeyboardInterrupt:
        typer.echo("unitctl: interrupted", err=True)
        sys.exit(130)


__all__ = ["ExitCode", "app", "fail", "main"]
