"""The typer layer: option declarations, one ``run`` call per command, one error handler.

Keep this module thin: the work is in ``unitctl.commands.<verb>``, imported inside each command so that
``unitctl --help`` never pays for jinja2, httpx or pystemd. Options that several commands take are declared
once below (one help text each).
"""

from __future__ import annotations

import enum
import errno
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeAlias

import typer
from typer.core import TyperGroup

from unitctl import __version__
from unitctl.commands.report import CURRENT, Invocation
from unitctl.deploy.model import (
    DEFAULT_HOOK_TIMEOUT,
    DEFAULT_READY_INTERVAL,
    DEFAULT_READY_TIMEOUT,
    DEFAULT_STRATEGY,
    STRATEGIES,
)
from unitctl.errors import ExitCode, UnitctlError
from unitctl.guard import DEFAULT_FAIL_AFTER
from unitctl.history import DEFAULT_DIR as DEFAULT_HISTORY_DIR
from unitctl.render import DEFAULT_BIND, DEFAULT_WORKERS
from unitctl.systemd import BACKENDS

if TYPE_CHECKING:
    from unitctl.commands.report import CommandResult

# Click's exception classes, found through typer's public BadParameter: typer vendors click from 0.22 on.
_ClickException: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

# What to do about an OS error on one of unitctl's own files (lock, history, output), by errno.
_OS_HINTS = {
    errno.ENOSPC: "free some space and retry",
    errno.EDQUOT: "free some space (disk quota) and retry",
    errno.EROFS: "pick a writable place (e.g. --history-dir)",
    errno.EACCES: "check its permissions (run as root, or pick --history-dir)",
    errno.EPERM: "check its permissions (run as root, or pick --history-dir)",
}


def error_parts(exc: BaseException) -> tuple[str, str | None, int] | None:
    """Return an error's message, hint (what to do) and exit code; None if it is a bug."""
    from unitctl.masking import mask

    if isinstance(exc, UnitctlError):
        return mask(exc.message), mask(exc.hint) if exc.hint else None, int(exc.exit_code)
    if isinstance(exc, _ClickException):  # usage errors: unknown option, missing argument, bad value...
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "unitctl"
        message = exc.format_message().strip().rstrip(".")  # type: ignore[attr-defined]
        return message, f"see '{command} --help'", int(ExitCode.USAGE)
    if isinstance(exc, OSError):
        # Nothing in systemd changed: apply turns OS errors inside its transaction into its own outcome.
        where = f"{exc.filename}: " if exc.filename is not None else ""
        name = errno.errorcode.get(exc.errno or 0, "")
        what = exc.strerror or str(exc)
        hint = _OS_HINTS.get(exc.errno or 0, "check the file and retry")
        return f"{where}{what}{f' ({name})' if name else ''}", hint, int(ExitCode.REFUSED)
    return None


def error_line(exc: BaseException) -> tuple[str, int] | None:
    """Return the one ``unitctl: error: WHAT; WHAT TO DO`` line and exit code for an error, None if it is a bug."""
    parts = error_parts(exc)
    if parts is None:
        return None
    message, hint, code = parts
    return f"unitctl: error: {message}{f'; {hint}' if hint else ''}", code


def _invocation(args: Sequence[str] | None) -> Invocation:
    """Return what the error handler must know before parsing: the verb, and whether --json was asked."""
    argv = list(sys.argv[1:] if args is None else args)
    options = argv[: argv.index("--")] if "--" in argv else argv
    verb = next((a for a in options if not a.startswith("-")), None)
    return Invocation(command=verb, as_json="--json" in options)


def _report_error(exc: BaseException) -> int | None:
    """Print an error: its envelope on stdout with --json (unless stdout has the result), one line on stderr."""
    from unitctl.commands.report import emit_failure

    parts = error_parts(exc)
    if parts is None:
        return None
    message, hint, code = parts
    emit_failure(message=message, hint=hint, exit_code=code, out=sys.stdout)
    try:
        typer.echo(f"unitctl: error: {message}{f'; {hint}' if hint else ''}", err=True)
    except (OSError, ValueError):  # the caller went away (closed stderr): the exit code still tells
        from unitctl.deploy.progress import silence

        silence(sys.stderr)
    return code


class _OneLineErrors(TyperGroup):
    """Typer's group, with every error (Click's usage errors too) reported as one line on stderr (and with
    --json as the envelope on stdout)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        inv = _invocation(args)
        token = CURRENT.set(inv)
        try:
            code = super().main(args, prog_name or "unitctl", complete_var, standalone_mode=False, **extra)
        except typer.Abort:  # Ctrl-C or end of input at a prompt
            typer.echo("unitctl: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare 'unitctl': the help, on stderr, exit 2
                typer.echo(exc.format_message(), err=True)  # type: ignore[attr-defined]
                sys.exit(int(ExitCode.USAGE))
            if isinstance(exc, BrokenPipeError):  # 'unitctl history | head': the reader left; say nothing
                # Point stdout at /dev/null so the flush at exit does not fail on the closed pipe again.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                sys.exit(1)
            reported = _report_error(exc)
            if reported is None:
                raise  # a bug: keep the traceback
            sys.exit(reported)
        finally:
            CURRENT.reset(token)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    name="unitctl",
    help=(
        "Render, rewrite and safely deploy systemd units for Gunicorn-served Python apps.\n\n"
        "Exit codes: 0 ok · 1 changes pending · 2 usage · 3 refused, nothing changed · "
        "4 rolled back, previous release healthy · 5 rollback failed, a human is needed."
    ),
    no_args_is_help=True,
    # --install-completion / --show-completion SHELL (bash, zsh, fish): completion of commands and options.
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _seconds(param: typer.CallbackParam, value: float | None) -> float | None:
    from unitctl.config import positive_number_flag

    return positive_number_flag(max(param.opts, key=len), value)


def _choice(name: str, values: Sequence[str]) -> Any:
    """Return a str Enum of ``values`` for typer: the parser refuses anything else (exit 2) and lists them."""
    return enum.Enum(name, [(v, v) for v in values], type=str)


def _value(choice: enum.Enum | None) -> str | None:
    return None if choice is None else str(choice.value)


def _show(res: CommandResult, *, as_json: bool = False) -> NoReturn:
    """Print a reporting command's result (text, or the --json envelope) and exit with its code."""
    from unitctl.commands.report import emit

    raise typer.Exit(emit(res, as_json=as_json, out=sys.stdout))


def _err(text: str) -> None:
    typer.echo(text, nl=False, err=True)


# Built from the constants the deploy checks, so the parser, the help and unitctl.toml agree on one list.
if TYPE_CHECKING:  # a functional Enum is a value to mypy; to typer it is the type of the option
    StrategyChoice: TypeAlias = enum.Enum
    BackendChoice: TypeAlias = enum.Enum
else:
    StrategyChoice = _choice("StrategyChoice", STRATEGIES)
    BackendChoice = _choice("BackendChoice", BACKENDS)

# -- options several commands take: declared once, one help text --------------------------------------

_Name = Annotated[str | None, typer.Argument(help="The unit, e.g. myapp (→ myapp.service).")]
_Json = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout, errors included (see docs/json.md).")
]
_ReadyUrl = Annotated[
    str | None,
    typer.Option(
        "--ready-url",
        metavar="URL",
        help="Readiness URL: http://HOST:PORT/PATH or unix:/SOCK:/PATH "
        "(rollback, status: [default: the last recorded one]).",
    ),
]
_ReadyTimeout = Annotated[
    float | None,
    typer.Option(
        "--ready-timeout",
        metavar="SECONDS",
        callback=_seconds,
        help=f"Seconds to wait for readiness [default: {DEFAULT_READY_TIMEOUT:g}].",
    ),
]
_ReadyInterval = Annotated[
    float | None,
    typer.Option(
        "--ready-interval",
        metavar="SECONDS",
        callback=_seconds,
        help=f"Seconds between probes [default: {DEFAULT_READY_INTERVAL:g}].",
    ),
]
# Hooks (docs/hooks.md): each may repeat; every command runs as the service, argv split, no shell.
_BuildCmd = Annotated[
    list[str] | None,
    typer.Option("--build-cmd", metavar="CMD", help="Run as the service in the checkout after each checkout."),
]
_PreSwitchCmd = Annotated[
    list[str] | None,
    typer.Option(
        "--pre-switch-cmd",
        metavar="CMD",
        help="Run as the service on the new release before the switch (e.g. migrations); failing is exit 3.",
    ),
]
_PostReadyCmd = Annotated[
    list[str] | None,
    typer.Option(
        "--post-ready-cmd",
        metavar="CMD",
        help="Run as the service once the new release is ready; failing rolls it back (exit 4).",
    ),
]
_HookTimeout = Annotated[
    float | None,
    typer.Option(
        "--hook-timeout",
        metavar="SECONDS",
        callback=_seconds,
        help=f"Seconds each hook may run before it is killed [default: {DEFAULT_HOOK_TIMEOUT:g}].",
    ),
]
_HistoryDir = Annotated[
    str | None,
    typer.Option(
        "--history-dir",
        metavar="DIR",
        help=f"Where the history, its unit copies and journals live [default: {DEFAULT_HISTORY_DIR}].",
    ),
]
_Backend = Annotated[
    BackendChoice | None,
    typer.Option(
        "--backend",
        help=f"How to talk to systemd (auto: D-Bus if pystemd works, else systemctl) [default: {BACKENDS[0]}].",
    ),
]
_Repo = Annotated[
    str | None,
    typer.Option(
        "--repo", metavar="DIR", help="The app's git checkout (apply: HEAD is deployed; rollback: [default: recorded])."
    ),
]
_Rev = Annotated[
    str | None,
    typer.Option("--rev", metavar="REV", help="Deploy exactly this revision, checked out detached [default: HEAD]."),
]
_EditTemplate = Annotated[
    bool,
    typer.Option(
        "--edit-template",
        help="For an instance (app@1.service) run from its template: change the template (every instance).",
    ),
]
# The unit's worker count and preload: rendered (render, --render), or the installed unit rewritten.
_Workers = Annotated[
    str | None,
    typer.Option(
        "--workers",
        metavar="N|auto",
        help="Worker count: N, or auto = (2 x CPUs of this host) + 1; diff/apply without --render: rewrite the "
        f"installed unit [render's default: {DEFAULT_WORKERS}].",
    ),
]
_MaxWorkers = Annotated[
    int | None, typer.Option("--max-workers", metavar="N", min=1, help="Upper limit for --workers auto.")
]
_NoPreload = Annotated[
    bool, typer.Option("--no-preload", help="The installed unit without --preload (also from GUNICORN_CMD_ARGS).")
]
_UnitFile = Annotated[
    str | None,
    typer.Option(
        "--unit-file",
        metavar="FILE",
        help="This unit file replaces the installed one (a NAME.socket beside it goes with it) [apply's default: "
        "keep it].",
    ),
]
_Render = Annotated[
    bool, typer.Option("--render", help="The unit 'unitctl render' makes from [render] and the render options.")
]
# Render options (render; diff and apply with --render).
_App = Annotated[
    str | None,
    typer.Option(
        "--app", metavar="MODULE:VAR", help="The WSGI app as MODULE:VARIABLE, e.g. myproject.wsgi:application."
    ),
]
_Bind = Annotated[
    list[str] | None,
    typer.Option(
        "--bind",
        metavar="ADDR",
        help=f"HOST:PORT, [IPv6]:PORT, unix:/abs/path or fd://N; repeatable [default: {DEFAULT_BIND}].",
    ),
]
_WorkingDir = Annotated[
    str | None,
    typer.Option("--working-dir", metavar="DIR", help="WorkingDirectory= (absolute); Gunicorn imports from here."),
]
_Venv = Annotated[
    str | None,
    typer.Option("--venv", metavar="DIR", help="Virtual environment whose bin/gunicorn runs the app (absolute)."),
]
_User = Annotated[str | None, typer.Option("--user", metavar="USER", help="User= the service runs as.")]
_Group = Annotated[str | None, typer.Option("--group", metavar="GROUP", help="Group= the service runs as.")]
_EnvFile = Annotated[
    list[str] | None,
    typer.Option(
        "--env-file", metavar="FILE", help="EnvironmentFile= (absolute; a leading '-' = optional); repeatable."
    ),
]
_Env = Annotated[
    list[str] | None, typer.Option("--env", metavar="KEY=VALUE", help="Environment variable KEY=VALUE; repeatable.")
]
_Template = Annotated[
    str | None,
    typer.Option("--template", metavar="FILE", help="Your own Jinja2 service template instead of the built-in one."),
]
_Socket = Annotated[
    bool | None,
    typer.Option(
        "--socket/--no-socket",
        help="Render NAME.socket too: systemd listens on the --bind addresses and hands them to Gunicorn, "
        "so a restart queues connections [default: --socket]; --no-socket: Gunicorn binds them itself.",
    ),
]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"unitctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Render, rewrite and safely deploy systemd units for Gunicorn-served Python apps."""


@app.command()
def render(
    name: Annotated[
        str | None, typer.Option("--name", metavar="NAME", help="Unit name, e.g. myapp (→ myapp.service).")
    ] = None,
    app_: _App = None,
    workers: _Workers = None,
    max_workers: _MaxWorkers = None,
    worker_class: Annotated[
        str | None,
        typer.Option(
            "--worker-class",
            "-k",
            metavar="CLASS",
            help="Gunicorn worker class: sync, gthread, gevent, or MODULE.CLASS "
            "(uvicorn_worker.UvicornWorker for FastAPI) [default: sync].",
        ),
    ] = None,
    bind: _Bind = None,
    working_dir: _WorkingDir = None,
    venv: _Venv = None,
    user: _User = None,
    group: _Group = None,
    env_file: _EnvFile = None,
    env: _Env = None,
    template: _Template = None,
    socket: _Socket = None,
    control_socket: Annotated[
        bool | None,
        typer.Option(
            "--control-socket/--no-control-socket",
            help="Keep Gunicorn's (>= 25.1) control socket, placed in /run/NAME [default: keep].",
        ),
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", metavar="TEXT", help="Description= of the unit.")
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o", "--output", metavar="FILE", help="Write the unit to this file atomically (the .socket next to it)."
        ),
    ] = None,
) -> None:
    """Render a systemd unit for a Gunicorn app from a Jinja2 template.

    Values not given as flags come from the [render] table of ./unitctl.toml; flags win.
    A --template gets ready-quoted values: name, service_unit, socket_unit, description, app, workers,
    exec_start, user, group, working_dir, env_files, environment, runtime_directories,
    runtime_directory_preserve, listen_streams, binds, venv, unitctl_version.
    """
    from unitctl.commands import render as command
    from unitctl.commands.settings import RenderSettings
    from unitctl.render import RenderFlags

    flags = RenderFlags(
        name=name, app=app_, workers=workers, max_workers=max_workers, worker_class=worker_class,
        bind=tuple(bind or ()), working_dir=working_dir, venv=venv, user=user, group=group,
        env_file=tuple(env_file or ()), env=tuple(env or ()), template=template, socket=socket,
        control_socket=control_socket, description=description,
    )  # fmt: skip
    settings = RenderSettings(flags=flags, output=output)
    typer.echo(command.run(settings=settings, err=lambda line: typer.echo(line, err=True)), nl=False)


@app.command()
def rewrite(
    file: Annotated[str, typer.Argument(help="The unit file to rewrite.")],
    workers: _Workers = None,
    max_workers: _MaxWorkers = None,
    no_preload: _NoPreload = False,
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Show the diff on stderr, then replace FILE atomically, mode/owner kept.")
    ] = False,
    drop_in: Annotated[
        str | None,
        typer.Option(
            "--drop-in", metavar="DIR", help="Leave FILE alone; write DIR/NAME.service.d/50-unitctl.conf instead."
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 when the rewrite would change the unit, else 0.")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Refuse (exit 3, nothing written) when --no-preload cannot turn preload off: a gunicorn.conf.py "
            "or GUNICORN_CMD_ARGS in an EnvironmentFile= sets it (otherwise a warning).",
        ),
    ] = False,
) -> None:
    """Rewrite the Gunicorn command line inside an existing unit, changing nothing else.

    Prints the result to stdout. Without --workers/--no-preload the unit is printed unchanged, byte for byte.
    """
    from unitctl.commands import rewrite as command
    from unitctl.commands.settings import RewriteSettings
    from unitctl.output import colour_enabled

    settings = RewriteSettings(
        file=file, workers=workers, max_workers=max_workers, no_preload=no_preload, in_place=in_place,
        drop_in=drop_in, check=check, strict=strict,
    )  # fmt: skip
    out = command.run(settings=settings, err=_err, colour=colour_enabled(sys.stderr))
    if out.stdout:
        typer.echo(out.stdout, nl=False)
    raise typer.Exit(out.exit_code)


@app.command()
def diff(
    name: Annotated[str, typer.Argument(help="The installed unit, e.g. myapp or myapp.service.")],
    unit_file: _UnitFile = None,
    render_: _Render = False,
    workers: _Workers = None,
    max_workers: _MaxWorkers = None,
    no_preload: _NoPreload = False,
    app_: _App = None,
    bind: _Bind = None,
    working_dir: _WorkingDir = None,
    venv: _Venv = None,
    user: _User = None,
    group: _Group = None,
    env_file: _EnvFile = None,
    env: _Env = None,
    template: _Template = None,
    socket: _Socket = None,
    root: Annotated[
        str,
        typer.Option("--root", metavar="DIR", help="Read the installed unit from the load path under this directory."),
    ] = "/",
    as_json: _Json = False,
) -> None:
    """Show the difference between the installed unit and the desired one (exit 1 if they differ).

    The desired unit: --unit-file FILE, --render (with render options), or --workers/--max-workers/--no-preload
    (the installed unit rewritten). The installed side is the unit with its drop-ins, as systemd sees it;
    secret Environment= values are masked as **** on both sides. Colour only on a terminal, never with NO_COLOR.
    """
    from unitctl.commands import diff as command
    from unitctl.commands.settings import DiffSettings
    from unitctl.desired import DesiredOptions
    from unitctl.output import colour_enabled
    from unitctl.render import RenderFlags

    desired = DesiredOptions(
        unit_file=unit_file, render=render_, workers=workers, max_workers=max_workers, no_preload=no_preload,
        render_flags=RenderFlags(
            app=app_, bind=tuple(bind or ()), working_dir=working_dir, venv=venv, user=user, group=group,
            env_file=tuple(env_file or ()), env=tuple(env or ()), template=template, socket=socket,
        ),
    )  # fmt: skip
    settings = DiffSettings(name=name, desired=desired, root=root)
    _show(command.run(settings=settings, colour=not as_json and colour_enabled(sys.stdout)), as_json=as_json)


@app.command()
def verify(
    file: Annotated[str, typer.Argument(help="The unit file to check; it need not be installed.")],
    name: Annotated[
        str | None, typer.Option("--name", metavar="NAME", help="Load it as this unit name [default: the file name].")
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="Checking away from the server (in CI): do not look for the programs, users and directories "
            "the unit names on this machine.",
        ),
    ] = False,
    as_json: _Json = False,
) -> None:
    """Check a candidate unit with systemd-analyze verify and unitctl's own checks.

    Exit 0 when there are no errors (warnings are printed), 3 when there are errors.
    """
    from unitctl.commands import verify as command
    from unitctl.commands.settings import VerifySettings

    _show(command.run(settings=VerifySettings(file=file, name=name, offline=offline)), as_json=as_json)


@app.command()
def apply(
    name: _Name = None,
    unit_file: _UnitFile = None,
    render_: _Render = False,
    workers: _Workers = None,
    max_workers: _MaxWorkers = None,
    no_preload: _NoPreload = False,
    app_: _App = None,
    bind: _Bind = None,
    working_dir: _WorkingDir = None,
    venv: _Venv = None,
    user: _User = None,
    group: _Group = None,
    env_file: _EnvFile = None,
    env: _Env = None,
    template: _Template = None,
    socket: _Socket = None,
    guarded: Annotated[
        bool | None,
        typer.Option(
            "--guarded/--no-guarded",
            help="Pre-import check, readiness guard and automatic rollback [default: off: write, reload, restart].",
        ),
    ] = None,
    repo: _Repo = None,
    rev: _Rev = None,
    ready_url: _ReadyUrl = None,
    ready_timeout: _ReadyTimeout = None,
    ready_interval: _ReadyInterval = None,
    strategy: Annotated[
        StrategyChoice | None,
        typer.Option(
            "--strategy",
            help=f"How to switch (auto: HUP if only the code changed, else restart) [default: {DEFAULT_STRATEGY}].",
        ),
    ] = None,
    fail_after: Annotated[
        int | None,
        typer.Option(
            "--fail-after",
            metavar="N",
            min=0,
            help="Fail the release after N HTTP non-2xx readiness answers in a row, before --ready-timeout "
            f"(refused connections do not count; 0: off) [default: {DEFAULT_FAIL_AFTER}].",
        ),
    ] = None,
    pre_import: Annotated[
        str | None,
        typer.Option(
            "--pre-import",
            metavar="MODULE:VAR",
            help="Check MODULE:VAR imports [default: gunicorn --check-config].",
        ),
    ] = None,
    no_pre_import: Annotated[
        bool | None, typer.Option("--no-pre-import", help="Skip the import check before the switch.")
    ] = None,
    canary: Annotated[
        bool | None,
        typer.Option(
            "--canary/--no-canary",
            help="Start the new release beside the live one and judge it before the switch [default: on if guarded].",
        ),
    ] = None,
    build_cmd: _BuildCmd = None,
    pre_switch_cmd: _PreSwitchCmd = None,
    post_ready_cmd: _PostReadyCmd = None,
    hook_timeout: _HookTimeout = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Capture and check, print the plan, change nothing (exit 1: changes).")
    ] = False,
    edit_template: _EditTemplate = False,
    as_json: _Json = False,
    history_dir: _HistoryDir = None,
    backend: _Backend = None,
) -> None:
    """Install a unit and restart its service; with --guarded, roll back unless it becomes ready.

    The unit to install is given as for 'unitctl diff': --unit-file FILE, --render (with render options), or
    --workers/--max-workers/--no-preload (the installed unit rewritten); none of them keeps the installed unit.
    Exit 0 deployed (or nothing to do), 1 dry run with changes, 3 refused (nothing changed), 4 failed and
    rolled back to a ready previous release, 5 the rollback failed too. Options also come from [apply]
    of ./unitctl.toml; flags win.
    """
    from unitctl.commands import apply as command
    from unitctl.commands.settings import ApplySettings, load
    from unitctl.desired import DesiredOptions
    from unitctl.render import RenderFlags

    settings = load(
        ApplySettings, "apply", name=name, unit_file=unit_file, guarded=guarded, repo=repo, rev=rev,
        ready_url=ready_url, ready_timeout=ready_timeout, ready_interval=ready_interval, strategy=_value(strategy),
        fail_after=fail_after, pre_import=pre_import, no_pre_import=no_pre_import, canary=canary,
        build_cmd=build_cmd, pre_switch_cmd=pre_switch_cmd, post_ready_cmd=post_ready_cmd,
        hook_timeout=hook_timeout, history_dir=history_dir, backend=_value(backend), dry_run=dry_run,
        edit_template=edit_template,
    )  # fmt: skip
    desired = DesiredOptions(
        render=render_, workers=workers, max_workers=max_workers, no_preload=no_preload,
        render_flags=RenderFlags(
            app=app_, bind=tuple(bind or ()), working_dir=working_dir, venv=venv, user=user, group=group,
            env_file=tuple(env_file or ()), env=tuple(env or ()), template=template, socket=socket,
        ),
    )  # fmt: skip
    _show(command.run(settings=settings, desired=desired), as_json=as_json)


@app.command()
def rollback(
    name: _Name = None,
    repo: _Repo = None,
    ready_url: _ReadyUrl = None,
    ready_timeout: _ReadyTimeout = None,
    ready_interval: _ReadyInterval = None,
    build_cmd: _BuildCmd = None,
    pre_switch_cmd: _PreSwitchCmd = None,
    post_ready_cmd: _PostReadyCmd = None,
    hook_timeout: _HookTimeout = None,
    edit_template: _EditTemplate = False,
    as_json: _Json = False,
    history_dir: _HistoryDir = None,
    backend: _Backend = None,
) -> None:
    """Switch a service back to its previous good deploy, guarded.

    The previous good deploy (revision and exact unit bytes) comes from the history; the switch is an
    apply with the same checks, guard and rollback. Exit codes as for apply.
    """
    from unitctl.commands import apply as command
    from unitctl.commands.settings import RollbackSettings, load

    settings = load(
        RollbackSettings, "rollback", name=name, repo=repo, ready_url=ready_url, ready_timeout=ready_timeout,
        ready_interval=ready_interval, build_cmd=build_cmd, pre_switch_cmd=pre_switch_cmd,
        post_ready_cmd=post_ready_cmd, hook_timeout=hook_timeout, history_dir=history_dir, backend=_value(backend),
        edit_template=edit_template,
    )  # fmt: skip
    _show(command.run_rollback(settings=settings), as_json=as_json)


@app.command()
def status(
    name: _Name = None,
    ready_url: _ReadyUrl = None,
    as_json: _Json = False,
    history_dir: _HistoryDir = None,
    backend: _Backend = None,
) -> None:
    """Show a unit's state, deployed revision, last outcome and readiness.

    Exit 0 whenever the state could be read (check "ready" in --json's result); readiness is probed once.
    """
    from unitctl.commands import status as command
    from unitctl.commands.settings import StatusSettings, load

    settings = load(
        StatusSettings, "status", name=name, ready_url=ready_url, history_dir=history_dir, backend=_value(backend)
    )
    _show(command.run(settings=settings), as_json=as_json)


@app.command()
def history(
    name: _Name = None,
    as_json: _Json = False,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=0, help="Show the last N attempts (0: all).")] = 20,
    history_dir: _HistoryDir = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Remove all but the --keep newest records of the unit (the last good deploy and the one "
            "'unitctl rollback' returns to are always kept) and the stored unit files only they used.",
        ),
    ] = False,
    keep: Annotated[
        int | None, typer.Option("--keep", metavar="N", min=1, help="With --prune: how many newest records to keep.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --prune: list what would be removed, change nothing (exit 1).")
    ] = False,
) -> None:
    """List the recorded deploys of a unit (oldest first); with --prune --keep N, remove old ones."""
    from unitctl.commands import history as command
    from unitctl.commands.settings import HistorySettings, load

    settings = load(
        HistorySettings, "history", name=name, history_dir=history_dir, limit=limit, prune=prune, keep=keep,
        dry_run=dry_run,
    )  # fmt: skip
    _show(command.run(settings=settings), as_json=as_json)


@app.command()
def fetch(
    repo: Annotated[str, typer.Argument(metavar="DIR", help="The app's checkout on this server.")],
    remote: Annotated[
        str, typer.Option("--remote", metavar="NAME", help="The remote to fetch (with its tags).")
    ] = "origin",
) -> None:
    """Fetch a remote into a checkout, running git as the checkout's owner (no hooks, no fsmonitor).

    What update_systemd_unit.sh --fetch runs; exit 0 fetched, 3 refused or the fetch failed.
    """
    from unitctl.commands import fetch as command
    from unitctl.commands.settings import FetchSettings

    command.run(settings=FetchSettings(repo=repo, remote=remote))


# -- deploy: the server's deploy step (the options of update_systemd_unit.sh; apply's options pass through) ---

# apply's options deploy decides itself, by parameter: the flag and what to do instead.
_OWN = "give it to deploy itself, before '--'"
_RENDERED = "deploy starts from the installed unit or --unit-file: write one with 'unitctl render -o FILE'"
_DEPLOY_OWNS = {
    "unit_file": ("--unit-file", _OWN), "workers": ("--workers", _OWN), "repo": ("--repo", _OWN),
    "rev": ("--rev", _OWN), "ready_url": ("--ready-url", _OWN), "ready_timeout": ("--ready-timeout", _OWN),
    "no_preload": ("--no-preload", "deploy drops --preload unless --keep-preload"),
    "guarded": ("--guarded/--no-guarded", "deploy is always guarded ('unitctl apply' installs unguarded)"),
    "max_workers": ("--max-workers", _RENDERED), "render_": ("--render", _RENDERED), "app_": ("--app", _RENDERED),
    "bind": ("--bind", _RENDERED), "working_dir": ("--working-dir", _RENDERED), "venv": ("--venv", _RENDERED),
    "user": ("--user", _RENDERED), "group": ("--group", _RENDERED), "env_file": ("--env-file", _RENDERED),
    "env": ("--env", _RENDERED), "template": ("--template", _RENDERED), "socket": ("--socket", _RENDERED),
}  # fmt: skip


def _apply_options(ctx: typer.Context, args: list[str]) -> dict[str, Any]:
    """Parse the options deploy passes to the guarded apply with apply's own declarations; return those given."""
    from unitctl.errors import UsageError

    command = typer.main.get_command(app).get_command(ctx, "apply")  # type: ignore[attr-defined]
    try:
        sub = command.make_context("deploy", list(args), parent=ctx.parent)
    except _ClickException as exc:  # as a UnitctlError: deploy reports it like its own (annotation, --json)
        line = error_line(exc)
        raise UsageError(line[0].removeprefix("unitctl: error: ") if line else str(exc)) from exc
    given = {
        k: (v.value if isinstance(v, enum.Enum) else v)
        for k, v in sub.params.items()
        # By name: typer may vendor its own click, whose ParameterSource is another enum than click's.
        if getattr(sub.get_parameter_source(k), "name", "") == "COMMANDLINE"
    }
    if "name" in given:
        raise UsageError(
            f"unexpected argument {given['name']!r} (the service is {ctx.params.get('service')!r})",
            hint="give apply options a value as --opt=VALUE or after '--'",
        )
    owned = [_DEPLOY_OWNS[k] for k in given if k in _DEPLOY_OWNS]
    if owned:
        flag, hint = owned[0]
        raise UsageError(f"{flag} is not an apply option deploy passes on", hint=hint)
    return given


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog="Other options are 'unitctl apply' options (--dry-run, --json, --strategy=S, --no-canary, "
    "--build-cmd=CMD, --history-dir=DIR, ...): flags as they are, options with a value as --opt=VALUE, "
    "or anything after '--'.",
)
def deploy(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Argument(metavar="SERVICE", help="The service, e.g. myapp.")] = None,
    repo: _Repo = None,
    rev: _Rev = None,
    fetch: Annotated[
        bool | None,
        typer.Option(
            "--fetch/--no-fetch",
            help="'git fetch --tags REMOTE' in --repo first, as the checkout's owner, no hooks (as 'unitctl fetch').",
        ),
    ] = None,
    remote: Annotated[
        str | None, typer.Option("--remote", metavar="NAME", help="The remote --fetch uses [default: origin].")
    ] = None,
    ready_url: _ReadyUrl = None,
    ready_timeout: _ReadyTimeout = None,
    workers: _Workers = None,
    keep_preload: Annotated[
        bool | None,
        typer.Option("--keep-preload/--no-keep-preload", help="Do not drop --preload (the README: the trade-off)."),
    ] = None,
    unit_file: _UnitFile = None,
    summary_stdout: Annotated[
        bool,
        typer.Option(
            "--summary-stdout",
            help="Report as in GitHub Actions, everything on stderr, the Markdown step summary on stdout "
            '(ssh HOST ... >> "$GITHUB_STEP_SUMMARY").',
        ),
    ] = False,
    config_file: Annotated[
        str | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="Settings file with [deploy] and [deploy.SERVICE] [default: /etc/unitctl/unitctl.toml, if present].",
        ),
    ] = None,
) -> None:
    """Deploy a service: rewrite a copy of its unit (no --preload, --workers), fetch, then a guarded apply.

    The unit is the installed one (systemd's FragmentPath) or --unit-file FILE. Settings not given as flags
    come from [deploy.SERVICE] and [deploy] of --config FILE (else /etc/unitctl/unitctl.toml, never ./unitctl.toml);
    flags win. When GITHUB_ACTIONS=true, failures are ::error:: annotations and a summary is appended to
    $GITHUB_STEP_SUMMARY. Exit 0 deployed (or nothing to do), 1 dry run with changes, 2 usage error, 3 refused,
    nothing changed, 4 the release failed, rolled back, previous release healthy, 5 rollback failed: a human is
    needed.
    """
    from unitctl.commands.deploy import cli_deploy

    flags = {
        "service": service, "repo": repo, "rev": rev, "fetch": fetch, "remote": remote, "ready_url": ready_url,
        "ready_timeout": ready_timeout, "workers": workers, "keep_preload": keep_preload, "unit_file": unit_file,
    }  # fmt: skip
    code = cli_deploy(
        flags=flags,
        apply_options=lambda: _apply_options(ctx, ctx.args),
        as_json="--json" in ctx.args,  # for an error before the options are parsed
        config_file=config_file,
        summary_stdout=summary_stdout,
    )
    raise typer.Exit(code)


def main() -> None:
    """Run the CLI (every error becomes one line and its exit code in _OneLineErrors.main)."""
    try:
        app(prog_name="unitctl")
    except KeyboardInterrupt:  # outside a command (typer turns one inside into exit 130)
        typer.echo("unitctl: interrupted", err=True)
        sys.exit(130)


__all__ = ["ExitCode", "app", "error_line", "error_parts", "main"]
