"""The typer layer: option declarations, one call per command, one error handler.

Keep this module thin. Each command imports the module that does its work inside the
function body, so that ``unitctl --help`` never pays for jinja2, httpx or pystemd.
"""

from __future__ import annotations

import enum
import errno
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

import typer
from typer.core import TyperGroup

from unitctl import __version__
from unitctl.deploy.model import DEFAULT_READY_INTERVAL, DEFAULT_READY_TIMEOUT, DEFAULT_STRATEGY, STRATEGIES
from unitctl.errors import ExitCode, UnitctlError
from unitctl.guard import DEFAULT_FAIL_AFTER
from unitctl.history import DEFAULT_DIR as DEFAULT_HISTORY_DIR
from unitctl.render import DEFAULT_BIND, DEFAULT_WORKERS
from unitctl.systemd import BACKENDS

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


def error_line(exc: BaseException) -> tuple[str, int] | None:
    """Return the one ``unitctl: error: WHAT; WHAT TO DO`` line and exit code for an error, None if it is a bug."""
    from unitctl.masking import mask

    if isinstance(exc, UnitctlError):
        return f"unitctl: error: {mask(str(exc))}", int(exc.exit_code)
    if isinstance(exc, _ClickException):  # usage errors: unknown option, missing argument, bad value...
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "unitctl"
        message = exc.format_message().strip().rstrip(".")  # type: ignore[attr-defined]
        return f"unitctl: error: {message}; see '{command} --help'", int(ExitCode.USAGE)
    if isinstance(exc, OSError):
        # Nothing in systemd changed: apply turns OS errors inside its transaction into its own outcome.
        where = f"{exc.filename}: " if exc.filename is not None else ""
        name = errno.errorcode.get(exc.errno or 0, "")
        what = exc.strerror or str(exc)
        hint = _OS_HINTS.get(exc.errno or 0, "check the file and retry")
        return f"unitctl: error: {where}{what}{f' ({name})' if name else ''}; {hint}", int(ExitCode.REFUSED)
    return None


class _OneLineErrors(TyperGroup):
    """Typer's group, with every error (Click's usage errors too) reported as one line on stderr."""

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
            line = error_line(exc)
            if line is None:
                raise  # a bug: keep the traceback
            try:
                typer.echo(line[0], err=True)
            except (OSError, ValueError):  # the caller went away (closed stderr): the exit code still tells
                from unitctl.deploy.progress import silence

                silence(sys.stderr)
            sys.exit(line[1])
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


# Built from the constants the deploy checks, so the parser, the help and unitctl.toml agree on one list.
if TYPE_CHECKING:  # a functional Enum is a value to mypy; to typer it is the type of the option
    StrategyChoice: TypeAlias = enum.Enum
    BackendChoice: TypeAlias = enum.Enum
else:
    StrategyChoice = _choice("StrategyChoice", STRATEGIES)
    BackendChoice = _choice("BackendChoice", BACKENDS)

# Options that apply and rollback share: readiness timing, checked by the rule unitctl.toml's values obey.
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
# Options of every command that reads the history or talks to systemd.
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
_Repo = Annotated[str | None, typer.Option("--repo", metavar="DIR", help="The app's git checkout (HEAD is deployed).")]

# Options that diff and apply share: the desired unit rendered from [render] and these flags (--render).
_EditTemplate = Annotated[
    bool,
    typer.Option(
        "--edit-template",
        help="For an instance (app@1.service) run from its template: change the template (every instance).",
    ),
]
_MaxWorkers = Annotated[
    int | None, typer.Option("--max-workers", metavar="N", min=1, help="Upper limit for --workers auto.")
]
_Workers = Annotated[
    str | None,
    typer.Option(
        "--workers", metavar="N|auto", help="Workers (N or auto); without --render: rewrite the installed unit."
    ),
]
_RenderApp = Annotated[str | None, typer.Option("--app", metavar="MODULE:VAR", help="With --render: MODULE:VARIABLE.")]
_RenderBind = Annotated[
    list[str] | None, typer.Option("--bind", metavar="ADDR", help="With --render: listen address; repeatable.")
]
_RenderWorkingDir = Annotated[str | None, typer.Option("--working-dir", metavar="DIR", help="With --render.")]
_RenderVenv = Annotated[str | None, typer.Option("--venv", metavar="DIR", help="With --render.")]
_RenderUser = Annotated[str | None, typer.Option("--user", metavar="USER", help="With --render.")]
_RenderGroup = Annotated[str | None, typer.Option("--group", metavar="GROUP", help="With --render.")]
_RenderEnvFile = Annotated[
    list[str] | None, typer.Option("--env-file", metavar="FILE", help="With --render; repeatable.")
]
_RenderEnv = Annotated[
    list[str] | None, typer.Option("--env", metavar="KEY=VALUE", help="With --render: KEY=VALUE; repeatable.")
]
_RenderTemplate = Annotated[
    str | None, typer.Option("--template", metavar="FILE", help="With --render: your own template.")
]
_RenderSocket = Annotated[
    bool | None,
    typer.Option(
        "--socket/--no-socket", help="With --render: socket activation, NAME.socket installed too [default: --socket]."
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
    app_: Annotated[
        str | None,
        typer.Option(
            "--app", metavar="MODULE:VAR", help="The WSGI app as MODULE:VARIABLE, e.g. myproject.wsgi:application."
        ),
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option(
            "--workers",
            metavar="N|auto",
            help=f"Worker count, or 'auto' = (2 x CPUs of this host) + 1 [default: {DEFAULT_WORKERS}].",
        ),
    ] = None,
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
    bind: Annotated[
        list[str] | None,
        typer.Option(
            "--bind",
            metavar="ADDR",
            help=f"HOST:PORT, [IPv6]:PORT, unix:/abs/path or fd://N; repeatable [default: {DEFAULT_BIND}].",
        ),
    ] = None,
    working_dir: Annotated[
        str | None,
        typer.Option("--working-dir", metavar="DIR", help="WorkingDirectory= (absolute); Gunicorn imports from here."),
    ] = None,
    venv: Annotated[
        str | None,
        typer.Option("--venv", metavar="DIR", help="Virtual environment whose bin/gunicorn runs the app (absolute)."),
    ] = None,
    user: Annotated[str | None, typer.Option("--user", metavar="USER", help="User= the service runs as.")] = None,
    group: Annotated[str | None, typer.Option("--group", metavar="GROUP", help="Group= the service runs as.")] = None,
    env_file: Annotated[
        list[str] | None,
        typer.Option(
            "--env-file", metavar="FILE", help="EnvironmentFile= (absolute; a leading '-' = optional); repeatable."
        ),
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", metavar="KEY=VALUE", help="Environment variable KEY=VALUE; repeatable.")
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            "--template", metavar="FILE", help="Your own Jinja2 service template instead of the built-in one."
        ),
    ] = None,
    socket: Annotated[
        bool | None,
        typer.Option(
            "--socket/--no-socket",
            help="Render NAME.socket too: systemd listens on the --bind addresses and hands them to Gunicorn, "
            "so a restart queues connections [default: --socket]; --no-socket: Gunicorn binds them itself.",
        ),
    ] = None,
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
    import os
    from pathlib import Path

    from unitctl.output import write_output
    from unitctl.render import render_from_flags

    flags = {
        "name": name,
        "app": app_,
        "workers": workers,
        "max_workers": max_workers,
        "worker_class": worker_class,
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
    result = render_from_flags(flags=flags, env_flags=env or [], cpu_count=os.cpu_count())
    for warning in result.warnings:
        typer.echo(f"unitctl: warning: {warning}", err=True)
    if output:
        target = Path(output)
        write_output(target, result.service)
        typer.echo(f"wrote {target}", err=True)
        if result.socket is not None and result.socket_name:
            socket_path = target.parent / result.socket_name
            write_output(socket_path, result.socket)
            typer.echo(f"wrote {socket_path}", err=True)
    else:
        typer.echo(result.service, nl=False)
        if result.socket is not None:
            typer.echo(f"\n# ==> {result.socket_name} <==")
            typer.echo(result.socket, nl=False)


@app.command()
def rewrite(
    file: Annotated[str, typer.Argument(help="The unit file to rewrite.")],
    workers: Annotated[
        str | None,
        typer.Option(
            "--workers", metavar="N|auto", help="Set the worker count: N, or auto = (2 x CPUs of this host) + 1."
        ),
    ] = None,
    max_workers: _MaxWorkers = None,
    no_preload: Annotated[
        bool, typer.Option("--no-preload", help="Remove --preload (also from GUNICORN_CMD_ARGS).")
    ] = False,
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
    import os
    from pathlib import Path

    from unitctl.errors import InputError, UsageError

    if in_place + bool(drop_in) + check > 1:
        raise UsageError("--in-place, --drop-in and --check exclude each other", hint="pick one")
    if max_workers is not None and workers is None:
        raise UsageError("--max-workers caps --workers auto", hint="add --workers auto")
    from unitctl.fsutil import read_unit_bytes
    from unitctl.render import parse_workers

    wanted = parse_workers(workers) if workers is not None else None
    path = Path(file)
    data = read_unit_bytes(path)
    text = data.decode("utf-8", "surrogateescape")
    if wanted is None and not no_preload:
        if in_place or drop_in:
            raise UsageError("nothing to write without --workers or --no-preload", hint="add an operation")
        from unitctl.unitfile import UnitFile

        UnitFile.parse(text, path=file)  # refuse (exit 3) what systemd would not load
        if check:
            typer.echo("no changes")
            return
        typer.echo(data, nl=False)
        return
    from unitctl import rewrite as rewrite_mod
    from unitctl.diff import colourize, unified
    from unitctl.gunicorn import default_read_file
    from unitctl.output import colour_enabled, write_output

    make = rewrite_mod.dropin_for if drop_in else rewrite_mod.rewrite_unit
    result = make(
        text,
        workers=wanted,
        no_preload=no_preload,
        max_workers=max_workers,
        cpu_count=os.cpu_count(),
        read_file=default_read_file,
        path=file,
    )
    if strict and result.preload_kept:
        from unitctl.errors import RefusedError

        raise RefusedError(
            f"{file}: --no-preload was asked, but preload stays on: {result.preload_kept} sets it",
            hint="remove preload_app (or --preload) there; nothing was written",
        )
    for warning in result.warnings:
        typer.echo(f"unitctl: warning: {warning}", err=True)
    summary = ", ".join(result.changes) or "no changes"
    if check:
        typer.echo(summary)
        raise typer.Exit(int(ExitCode.CHANGES_PENDING if result.changed else ExitCode.OK))
    if in_place or drop_in:
        target = path.resolve()  # a symlinked unit stays a symlink: replace the file it points to
        if drop_in:
            from unitctl.systemd.base import validate_unit_name

            if not Path(drop_in).is_dir():
                raise InputError(f"--drop-in {drop_in}: no such directory", hint="e.g. /etc/systemd/system")
            target = Path(drop_in) / f"{validate_unit_name(path.name)}.d" / "50-unitctl.conf"
        if not result.changed:
            typer.echo(f"{file}: no changes; nothing written", err=True)
            return
        # Show the diff before anything is written.
        # Bytes, not read_text: universal newlines would turn CRLF into LF and mark every line as changed.
        old = target.read_bytes().decode("utf-8", "surrogateescape") if target.is_file() else ""
        lines = unified(old, result.text, old_name=str(target), new_name=str(target))
        for line in colourize(lines, colour_enabled(sys.stderr)):
            typer.echo(line, nl=False, err=True)
        target.parent.mkdir(mode=0o755, exist_ok=True)
        write_output(target, result.text)
        typer.echo(f"wrote {target}: {summary}", err=True)
        return
    typer.echo(result.text.encode("utf-8", "surrogateescape"), nl=False)


@app.command()
def diff(
    name: Annotated[str, typer.Argument(help="The installed unit, e.g. myapp or myapp.service.")],
    unit_file: Annotated[
        str | None,
        typer.Option("--unit-file", metavar="FILE", help="Desired state: this unit file replaces the installed one."),
    ] = None,
    render_: Annotated[
        bool,
        typer.Option("--render", help="Desired state: the unit 'unitctl render' makes from the options below."),
    ] = False,
    workers: Annotated[
        str | None,
        typer.Option(
            "--workers",
            metavar="N|auto",
            help="Desired workers (N or auto); without --render: rewrite the installed unit.",
        ),
    ] = None,
    max_workers: _MaxWorkers = None,
    no_preload: Annotated[
        bool, typer.Option("--no-preload", help="Desired state: the installed unit without --preload.")
    ] = False,
    app_: _RenderApp = None,
    bind: _RenderBind = None,
    working_dir: _RenderWorkingDir = None,
    venv: _RenderVenv = None,
    user: _RenderUser = None,
    group: _RenderGroup = None,
    env_file: _RenderEnvFile = None,
    env: _RenderEnv = None,
    template: _RenderTemplate = None,
    socket: _RenderSocket = None,
    root: Annotated[
        str,
        typer.Option("--root", metavar="DIR", help="Read the installed unit from the load path under this directory."),
    ] = "/",
) -> None:
    """Show the difference between the installed unit and the desired one (exit 1 if they differ).

    The installed side is the unit with its drop-ins, as systemd sees it; secret Environment= values
    are masked as **** on both sides. Colour only on a terminal, never with NO_COLOR.
    """
    import os

    from unitctl import diff as diff_mod
    from unitctl.desired import DesiredOptions, resolve
    from unitctl.output import colour_enabled

    opts = DesiredOptions(
        unit_file=unit_file, render=render_, workers=workers, max_workers=max_workers, no_preload=no_preload,
        app=app_, bind=tuple(bind or ()), working_dir=working_dir, venv=venv, user=user, group=group,
        env_file=tuple(env_file or ()), env=tuple(env or ()), template=template, socket=socket,
    )  # fmt: skip
    want = resolve(name, opts, cpu_count=os.cpu_count())
    outcome = diff_mod.diff_installed(
        name=name, root=root, unit_file=want.unit_file, rendered=want.rendered, rewrite=want.rewrite
    )
    colour = colour_enabled(sys.stdout)
    for line in diff_mod.colourize(outcome.lines, colour):
        typer.echo(line, nl=False)
    typer.echo(outcome.summary)
    raise typer.Exit(int(ExitCode.CHANGES_PENDING if outcome.differs else ExitCode.OK))


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
) -> None:
    """Check a candidate unit with systemd-analyze verify and unitctl's own checks.

    Exit 0 when there are no errors (warnings are printed), 3 when there are errors.
    """
    from pathlib import Path

    from unitctl.errors import VerificationError
    from unitctl.verify import verify_unit

    report = verify_unit(Path(file), name=name, offline=offline)
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


@app.command()
def apply(
    name: Annotated[str | None, typer.Argument(help="The unit, e.g. myapp (→ myapp.service).")] = None,
    unit_file: Annotated[
        str | None,
        typer.Option("--unit-file", metavar="FILE", help="The unit to install [default: keep the installed unit]."),
    ] = None,
    render_: Annotated[
        bool, typer.Option("--render", help="Install the unit 'unitctl render' makes from [render] and the options.")
    ] = False,
    workers: _Workers = None,
    max_workers: _MaxWorkers = None,
    no_preload: Annotated[
        bool, typer.Option("--no-preload", help="Install the installed unit rewritten without --preload.")
    ] = False,
    app_: _RenderApp = None,
    bind: _RenderBind = None,
    working_dir: _RenderWorkingDir = None,
    venv: _RenderVenv = None,
    user: _RenderUser = None,
    group: _RenderGroup = None,
    env_file: _RenderEnvFile = None,
    env: _RenderEnv = None,
    template: _RenderTemplate = None,
    socket: _RenderSocket = None,
    guarded: Annotated[
        bool | None,
        typer.Option(
            "--guarded/--no-guarded",
            help="Pre-import check, readiness guard and automatic rollback [default: off: write, reload, restart].",
        ),
    ] = None,
    repo: _Repo = None,
    rev: Annotated[
        str | None, typer.Option("--rev", metavar="REV", help="Check out this revision (detached) [default: HEAD].")
    ] = None,
    ready_url: Annotated[
        str | None,
        typer.Option("--ready-url", metavar="URL", help="Readiness URL: http://HOST:PORT/PATH or unix:/SOCK:/PATH."),
    ] = None,
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
    build_cmd: Annotated[
        str | None,
        typer.Option("--build-cmd", metavar="CMD", help="Run in --repo after each checkout (argv split, no shell)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Capture and check, print the plan, change nothing (exit 1: changes).")
    ] = False,
    edit_template: _EditTemplate = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON result object on stdout.")] = False,
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
    from unitctl.deploy.commands import APPLY_SCHEMA, cli_run, real_edges, request_from_settings, settings
    from unitctl.desired import DesiredOptions
    from unitctl.fsutil import naming

    flags = {
        "name": name, "unit_file": unit_file, "guarded": guarded, "repo": repo, "rev": rev, "ready_url": ready_url,
        "ready_timeout": ready_timeout, "ready_interval": ready_interval, "strategy": _value(strategy),
        "fail_after": fail_after, "pre_import": pre_import, "no_pre_import": no_pre_import, "canary": canary,
        "build_cmd": build_cmd,
        "history_dir": history_dir, "backend": _value(backend),
    }  # fmt: skip
    s = settings("apply", APPLY_SCHEMA, flags)
    desired = DesiredOptions(
        render=render_, workers=workers, max_workers=max_workers, no_preload=no_preload, app=app_,
        bind=tuple(bind or ()), working_dir=working_dir, venv=venv, user=user, group=group,
        env_file=tuple(env_file or ()), env=tuple(env or ()), template=template, socket=socket,
    )  # fmt: skip
    request = request_from_settings(s, command="apply", dry_run=dry_run, desired=desired, edit_template=edit_template)
    # An OS error without a file name (a write through the lock's descriptor) names where unitctl's files are.
    with naming(request.history_dir):
        code = cli_run(request, real_edges(s.get("backend")), as_json=as_json, out=sys.stdout)
    raise typer.Exit(code)


@app.command()
def rollback(
    name: Annotated[str | None, typer.Argument(help="The unit, e.g. myapp.")] = None,
    repo: Annotated[
        str | None, typer.Option("--repo", metavar="DIR", help="The checkout [default: the one recorded].")
    ] = None,
    ready_url: Annotated[
        str | None, typer.Option("--ready-url", metavar="URL", help="Readiness URL [default: recorded].")
    ] = None,
    ready_timeout: _ReadyTimeout = None,
    ready_interval: _ReadyInterval = None,
    build_cmd: Annotated[
        str | None, typer.Option("--build-cmd", metavar="CMD", help="Run in the checkout after it.")
    ] = None,
    edit_template: _EditTemplate = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON result object on stdout.")] = False,
    history_dir: _HistoryDir = None,
    backend: _Backend = None,
) -> None:
    """Switch a service back to its previous good deploy, guarded.

    The previous good deploy (revision and exact unit bytes) comes from the history; the switch is an
    apply with the same checks, guard and rollback. Exit codes as for apply.
    """
    from unitctl.deploy.commands import ROLLBACK_SCHEMA, cli_run, real_edges, request_from_settings, settings
    from unitctl.fsutil import naming

    flags = {
        "name": name, "repo": repo, "ready_url": ready_url, "ready_timeout": ready_timeout,
        "ready_interval": ready_interval, "build_cmd": build_cmd, "history_dir": history_dir,
        "backend": _value(backend),
    }  # fmt: skip
    s = settings("rollback", ROLLBACK_SCHEMA, flags)
    request = request_from_settings(s, command="rollback", edit_template=edit_template)
    with naming(request.history_dir):
        code = cli_run(request, real_edges(s.get("backend")), as_json=as_json, out=sys.stdout)
    raise typer.Exit(code)


@app.command()
def status(
    name: Annotated[str | None, typer.Argument(help="The unit, e.g. myapp.")] = None,
    ready_url: Annotated[
        str | None,
        typer.Option("--ready-url", metavar="URL", help="Probe this URL once [default: the last recorded one]."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    history_dir: _HistoryDir = None,
    backend: _Backend = None,
) -> None:
    """Show a unit's state, deployed revision, last outcome and readiness.

    Exit 0 whenever the state could be read (check "ready" in --json); readiness is probed once.
    """
    from pathlib import Path

    from unitctl.deploy.commands import STATUS_SCHEMA, cli_status, settings

    flags = {"name": name, "ready_url": ready_url, "history_dir": history_dir, "backend": _value(backend)}
    s = settings("status", STATUS_SCHEMA, flags)
    if s.get("ready_url"):
        from unitctl.probe import parse_target

        parse_target(s["ready_url"])  # a malformed URL is a usage error before systemd is asked anything
    code = cli_status(s, history_dir=Path(s["history_dir"]) if s.get("history_dir") else None, as_json=as_json)
    raise typer.Exit(code)


@app.command()
def history(
    name: Annotated[str | None, typer.Argument(help="The unit, e.g. myapp.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of the records.")] = False,
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
    from unitctl.deploy.commands import STATUS_SCHEMA, cli_history, cli_prune, settings
    from unitctl.errors import UsageError

    if not prune and (keep is not None or dry_run):
        raise UsageError("--keep and --dry-run go with --prune", hint="add --prune")
    if prune and keep is None:
        raise UsageError("--prune needs --keep N", hint="add e.g. --keep 50")
    if prune and as_json:
        raise UsageError("--prune prints no JSON", hint="drop --json")
    s = settings("history", STATUS_SCHEMA, {"name": name, "history_dir": history_dir})
    if prune:
        assert keep is not None
        raise typer.Exit(cli_prune(s, keep=keep, dry_run=dry_run))
    cli_history(s, as_json=as_json, limit=limit)


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
    from pathlib import Path

    from unitctl.gitrepo import GitRepo

    r = GitRepo(Path(repo))
    r.check_repo()
    r.fetch(remote)


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
    repo: Annotated[
        str | None, typer.Option("--repo", metavar="DIR", help="The app's git checkout on this server.")
    ] = None,
    rev: Annotated[
        str | None,
        typer.Option("--rev", metavar="REV", help="Deploy exactly this revision (a commit hash) [default: HEAD]."),
    ] = None,
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
    ready_url: Annotated[
        str | None,
        typer.Option("--ready-url", metavar="URL", help="Readiness URL the guard polls: http://HOST:PORT/PATH."),
    ] = None,
    ready_timeout: _ReadyTimeout = None,
    workers: Annotated[
        str | None,
        typer.Option(
            "--workers", metavar="N|auto", help="Set Gunicorn's worker count (auto: 2 x CPUs + 1) [default: keep]."
        ),
    ] = None,
    keep_preload: Annotated[
        bool | None,
        typer.Option("--keep-preload/--no-keep-preload", help="Do not drop --preload (the README: the trade-off)."),
    ] = None,
    unit_file: Annotated[
        str | None,
        typer.Option(
            "--unit-file",
            metavar="FILE",
            help="Start from this unit instead of the installed one (first deploy); a NAME.socket beside it goes "
            "with it.",
        ),
    ] = None,
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


__all__ = ["ExitCode", "app", "error_line", "main"]
