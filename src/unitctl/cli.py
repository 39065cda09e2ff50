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
def render(
    name: Annotated[str | None, typer.Option("--name", help="Unit name, e.g. myapp (→ myapp.service).")] = None,
    app_: Annotated[
        str | None, typer.Option("--app", help="The WSGI app as MODULE:VARIABLE, e.g. myproject.wsgi:application.")
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option("--workers", help="Worker count, or 'auto' = (2 x CPUs of this host) + 1 [default: auto]."),
    ] = None,
    max_workers: Annotated[int | None, typer.Option("--max-workers", help="Upper limit for --workers auto.")] = None,
    bind: Annotated[
        list[str] | None,
        typer.Option(
            "--bind",
            help="HOST:PORT, [IPv6]:PORT, unix:/abs/path or fd://N; repeatable [default: 127.0.0.1:8000].",
        ),
    ] = None,
    working_dir: Annotated[
        str | None, typer.Option("--working-dir", help="WorkingDirectory= (absolute); Gunicorn imports from here.")
    ] = None,
    venv: Annotated[
        str | None, typer.Option("--venv", help="Virtual environment whose bin/gunicorn runs the app (absolute).")
    ] = None,
    user: Annotated[str | None, typer.Option("--user", help="User= the service runs as.")] = None,
    group: Annotated[str | None, typer.Option("--group", help="Group= the service runs as.")] = None,
    env_file: Annotated[
        list[str] | None,
        typer.Option("--env-file", help="EnvironmentFile= (absolute; a leading '-' = optional); repeatable."),
    ] = None,
    env: Annotated[list[str] | None, typer.Option("--env", help="Environment variable KEY=VALUE; repeatable.")] = None,
    template: Annotated[
        str | None, typer.Option("--template", help="Your own Jinja2 service template instead of the built-in one.")
    ] = None,
    socket: Annotated[
        bool | None,
        typer.Option(
            "--socket/--no-socket",
            help="Also render NAME.socket for socket activation (systemd listens on the --bind addresses).",
        ),
    ] = None,
    control_socket: Annotated[
        bool | None,
        typer.Option(
            "--control-socket/--no-control-socket",
            help="Keep Gunicorn's (>= 25.1) control socket, placed in /run/NAME [default: keep].",
        ),
    ] = None,
    description: Annotated[str | None, typer.Option("--description", help="Description= of the unit.")] = None,
    output: Annotated[
        str | None,
        typer.Option("-o", "--output", help="Write the unit to this file atomically (the .socket next to it)."),
    ] = None,
) -> None:
    """Render a systemd unit for a Gunicorn app from a Jinja2 template.

    Values not given as flags come from the [render] table of ./unitctl.toml; flags win.
    """
    import os
    from pathlib import Path

    from unitctl.output import atomic_write
    from unitctl.render import render_from_flags

    flags = {
        "name": name,
        "app": app_,
        "workers": workers,
        "max_workers": max_workers,
        "bind": bind,
        "working_dir": working_dir,
        "venv": venv,
        "user": user,
        "group": group,
        "env_file": env_file,
        "template": template,
        "socket": socket,
        "control_socket": control_socket,
        "description": description,
    }
    try:
        result = render_from_flags(flags=flags, env_flags=env or [], cpu_count=os.cpu_count())
        for warning in result.warnings:
            typer.echo(f"unitctl: warning: {warning}", err=True)
        if output:
            target = Path(output)
            atomic_write(target, result.service)
            typer.echo(f"wrote {target}", err=True)
            if result.socket is not None and result.socket_name:
                socket_path = target.parent / result.socket_name
                atomic_write(socket_path, result.socket)
                typer.echo(f"wrote {socket_path}", err=True)
        else:
            typer.echo(result.service, nl=False)
            if result.socket is not None:
                typer.echo(f"\n# ==> {result.socket_name} <==")
                typer.echo(result.socket, nl=False)
    except UnitctlError as err:
        fail(err)


@app.command()
def rewrite() -> None:
    """Rewrite the Gunicorn command line inside an existing unit, changing nothing else."""
    _not_yet("rewrite")


@app.command()
def diff() -> None:
    """Show the difference between the installed unit and the desired one (exit 1 if they differ)."""
    _not_yet("diff")


@app.command()
def verify(
    file: Annotated[str, typer.Argument(help="The unit file to check; it need not be installed.")],
    name: Annotated[
        str | None, typer.Option("--name", help="Load it as this unit name (default: the file name).")
    ] = None,
) -> None:
    """Check a candidate unit with systemd-analyze verify and unitctl's own checks.

    Exit 0 when there are no errors (warnings are printed), 3 when there are errors.
    """
    from pathlib import Path

    from unitctl.errors import VerificationError
    from unitctl.verify import verify_unit

    try:
        report = verify_unit(Path(file), name=name)
        for error in report.errors:
            typer.echo(f"error: {error}")
        for warning in report.warnings:
            typer.echo(f"warning: {warning}")
        if report.errors:
            n = len(report.errors)
            raise VerificationError(
                f"{file}: {n} error{'s' if n > 1 else ''} found", hint="fix them and run 'unitctl verify' again"
            )
        count = len(report.warnings)
        typer.echo(f"{file}: ok" + (f" ({count} warning{'s' if count > 1 else ''})" if count else ""))
    except UnitctlError as err:
        fail(err)


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
