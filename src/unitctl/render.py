"""Render a systemd unit (and a matching ``.socket``) for a Gunicorn app from a Jinja2 template.

Pure apart from the file-reading edge marked at the end (template files, ``unitctl.toml``): every value is
validated here and quoted for the directive it lands in (``execline.quote`` for ``ExecStart=``, systemd's word rules for
``Environment=``, ``%`` doubled everywhere since systemd expands specifiers on load), so a
template only places ready-made strings. The defaults follow Gunicorn's own systemd guide
(docs/deploy.rst): ``Type=notify``, ``ExecReload=`` sends HUP, ``KillMode=mixed``,
``TimeoutStopSec=5``, ``PrivateTmp=true``, a ``RuntimeDirectory=``, and no ``--preload``.

Template context (for ``--template``): ``name`` (unit name without ``.service``),
``service_unit``, ``socket_unit`` (None with ``--no-socket``), ``description``, ``app``,
``workers`` (int), ``exec_start``, ``user``, ``group``, ``working_dir``, ``env_files``,
``environment`` (quoted ``Environment=`` values), ``runtime_directories``,
``runtime_directory_preserve`` (bool), ``listen_streams``, ``binds``, ``venv``,
``unitctl_version``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

from unitctl.errors import InputError, UsageError
from unitctl.execline import is_env_name
from unitctl.gunicorn.workers import Workers, parse_workers, resolve_workers

SERVICE_TEMPLATE = "gunicorn.service.j2"
SOCKET_TEMPLATE = "gunicorn.socket.j2"

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Gunicorn (>= 20.1) evaluates VAR as a name or a call of a name with literal arguments.
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\(.*\))?$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_USER = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]{0,30}[A-Za-z0-9_.$-]?|[0-9]{1,10})$")

DEFAULT_WORKERS: Workers = "auto"
DEFAULT_BIND = "127.0.0.1:8000"


@dataclass(frozen=True)
class RenderFlags:
    """The render options as given (None or empty: not given); ``[render]`` of unitctl.toml supplies the rest."""

    name: str | None = None
    app: str | None = None
    workers: str | None = None
    max_workers: int | None = None
    worker_class: str | None = None
    bind: tuple[str, ...] = ()
    working_dir: str | None = None
    venv: str | None = None
    user: str | None = None
    group: str | None = None
    env_file: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # NAME=VALUE words; merged per variable over the file's [render.env]
    template: str | None = None
    socket: bool | None = None
    control_socket: bool | None = None
    description: str | None = None

    def given(self) -> dict[str, Any]:
        """Return the options that were given, as unitctl.toml keys (the env words apart: they merge per name)."""
        values = {f.name: getattr(self, f.name) for f in fields(RenderFlags) if f.name != "env"}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if v not in (None, ())}


@dataclass(frozen=True)
class RenderOptions:
    """What the user asked for, before validation."""

    name: str
    app: str
    workers: Workers = DEFAULT_WORKERS
    max_workers: int | None = None
    worker_class: str | None = None
    binds: Sequence[str] = ()
    working_dir: str | None = None
    venv: str | None = None
    user: str | None = None
    group: str | None = None
    env_files: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    # Socket activation by default: systemd holds the listening socket, so a restart queues connections
    # instead of refusing them.
    socket: bool = True
    control_socket: bool = True
    description: str | None = None


@dataclass(frozen=True)
class Rendered:
    """The rendered unit text(s) and what the user should know about them."""

    service_name: str
    service: str
    socket_name: str | None = None
    socket: str | None = None
    warnings: tuple[str, ...] = ()


def render(
    options: RenderOptions,
    *,
    cpu_count: int | None,
    service_template: str,
    socket_template: str,
    service_template_path: Path | None = None,
) -> Rendered:
    """Validate ``options`` and render the service (and socket) unit texts in Jinja2's sandbox.

    ``service_template_path``: where a user's template came from; it names the template in errors and its
    folder is the only place ``{% include %}`` reads from. Built-in templates include nothing.
    """
    context, warnings = build_context(options, cpu_count=cpu_count)
    service = _render_one(
        service_template, context, label=str(service_template_path or f"built-in {SERVICE_TEMPLATE}"),
        folder=service_template_path.parent if service_template_path else None,
    )  # fmt: skip
    socket = None
    if options.socket:
        socket = _render_one(socket_template, context, label=f"built-in {SOCKET_TEMPLATE}", folder=None)
    return Rendered(
        service_name=context["service_unit"],
        service=service,
        socket_name=context["socket_unit"],
        socket=socket,
        warnings=tuple(warnings),
    )


# A template is code someone else wrote, run by root: Jinja2's sandbox refuses attribute tricks
# (cycler.__init__.__globals__.os), the immutable variant refuses changing the context, and these caps
# refuse arithmetic that would eat the machine's memory ('x' * 10**12, 10**10**10).
MAX_REPEAT = 1 << 20
MAX_EXPONENT = 1024
_TEMPLATE_HINT = "fix the template; it gets only the values listed in 'unitctl render --help'"


def _sandbox(folder: Path | None) -> Any:
    """Return the sandboxed Jinja2 environment templates run in; includes come from ``folder`` only."""
    import jinja2
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Sandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is above the limit of {MAX_EXPONENT}")
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_REPEAT:
                        raise SecurityError(f"repeating a sequence to {len(seq) * n} items is above {MAX_REPEAT}")
            return super().call_binop(context, operator, left, right)

    class FolderLoader(jinja2.BaseLoader):
        """Load ``{% include %}`` targets from the template's own folder, never outside it (symlinks resolved)."""

        def get_source(self, environment: Any, template: str) -> tuple[str, str, Any]:
            if folder is None:
                raise jinja2.TemplateNotFound(template, f"{template!r}: built-in templates include nothing")
            base = folder.resolve()
            path = (base / template).resolve()
            if not path.is_relative_to(base):
                raise jinja2.TemplateNotFound(template, f"{template!r} is outside the template's folder {base}")
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                why = getattr(exc, "strerror", None) or "not UTF-8 text"
                raise jinja2.TemplateNotFound(template, f"{template!r} in {base}: {why}") from None
            return text, str(path), lambda: False

    return Sandbox(
        loader=FolderLoader(),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # the output is a unit file, not HTML
    )


def _render_one(source: str, context: Mapping[str, Any], *, label: str, folder: Path | None) -> str:
    """Render one template; any error, the sandbox's included, is one InputError naming the template FILE:LINE."""
    import jinja2
    from jinja2.exceptions import SecurityError

    env = _sandbox(folder)
    try:
        text: str = env.from_string(source).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        where = _where(label, exc.filename, exc.lineno)
        raise InputError(f"{where}: template syntax error: {exc.message}", hint="fix the template") from None
    except SecurityError as exc:
        refused = str(exc).rstrip(".")
        raise InputError(
            f"{_where_tb(label, exc)}: the template tried something the sandbox refuses: {refused}", hint=_TEMPLATE_HINT
        ) from None
    except jinja2.UndefinedError as exc:
        raise InputError(f"{_where_tb(label, exc)}: unknown variable: {exc.message}", hint=_TEMPLATE_HINT) from None
    except jinja2.TemplateNotFound as exc:
        raise InputError(
            f"{_where_tb(label, exc)}: cannot include: {exc.message}",
            hint="include only files in the template's own folder, by a relative name",
        ) from None
    except Exception as exc:  # the template's own code failed (1/0, a bad filter argument, ...)
        raise InputError(
            f"{_where_tb(label, exc)}: template error: {type(exc).__name__}: {exc}", hint="fix the template"
        ) from None
    return text if text.endswith("\n") else text + "\n"


def _where(label: str, filename: str | None, lineno: int | None) -> str:
    """Return FILE:LINE for an error in the main template (no filename) or an included one."""
    name = filename if filename and filename != "<template>" else label
    return f"{name}:{lineno}" if lineno else name


def _where_tb(label: str, exc: BaseException) -> str:
    """Return FILE:LINE of the innermost template frame in ``exc``'s traceback (Jinja2 maps frames to lines)."""
    import traceback

    found: tuple[str, int | None] | None = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if not frame.filename.endswith(".py"):  # "<template>" or an included template's path
            found = (frame.filename, frame.lineno)
    if found is None:
        return label
    return _where(label, found[0], found[1])


def build_context(options: RenderOptions, *, cpu_count: int | None) -> tuple[dict[str, Any], list[str]]:
    """Validate every option and return the template context plus warnings."""
    from unitctl import __version__

    warnings: list[str] = []
    base = validate_name(options.name)
    app = validate_app(options.app)
    workers = resolve_workers(options.workers, cpu_count=cpu_count, max_workers=options.max_workers)
    worker_class, class_warning = validate_worker_class(options.worker_class)
    if class_warning:
        warnings.append(class_warning)
    binds = [validate_bind(b, socket=options.socket) for b in options.binds] or [DEFAULT_BIND]
    working_dir = validate_path(options.working_dir, "--working-dir") if options.working_dir else None
    venv = validate_path(options.venv, "--venv") if options.venv else None
    user = validate_user(options.user, "--user") if options.user else None
    group = validate_user(options.group, "--group") if options.group else None
    env_files = [_env_file(p) for p in options.env_files]
    env = {validate_env_name(k): validate_env_value(k, v) for k, v in options.env.items()}

    runtime_dirs, preserve, listen_streams = _bind_directories(binds, base, socket=options.socket, warnings=warnings)

    if options.control_socket and "XDG_RUNTIME_DIR" not in env:
        # Gunicorn >= 25.1 puts its control socket in $XDG_RUNTIME_DIR, else $HOME/.gunicorn: two
        # services of one user would fight over ~/.gunicorn/gunicorn.ctl, and a read-only or missing
        # home fails. Older Gunicorn ignores the variable, so this works for every version.
        env = {"XDG_RUNTIME_DIR": f"/run/{base}", **env}

    argv = _gunicorn_argv(options, venv=venv, workers=workers, worker_class=worker_class, binds=binds, app=app)

    if not user:
        warnings.append("no --user: the service runs as root; create a system user and pass --user")
    if not working_dir:
        warnings.append(
            f"no --working-dir: Gunicorn imports {app.split(':')[0]!r} from / unless it is installed in the environment"
        )
    description = options.description or f"Gunicorn serving {app} ({base})"
    _check_line(description, "--description")
    context: dict[str, Any] = {
        "name": base,
        "service_unit": f"{base}.service",
        "socket_unit": f"{base}.socket" if options.socket else None,
        "description": escape_specifiers(description),
        "app": app,
        "workers": workers,
        "exec_start": exec_line(argv),
        "user": user,
        "group": group,
        "working_dir": escape_specifiers(working_dir) if working_dir else None,
        "env_files": [escape_specifiers(p) for p in env_files],
        "environment": [quote_env(k, v) for k, v in env.items()],
        "runtime_directories": " ".join(runtime_dirs),
        "runtime_directory_preserve": preserve,
        "listen_streams": [escape_specifiers(s) for s in listen_streams],
        "binds": binds,
        "venv": venv,
        "unitctl_version": __version__,
    }
    return context, warnings


def _bind_directories(
    binds: Sequence[str], base: str, *, socket: bool, warnings: list[str]
) -> tuple[list[str], bool, list[str]]:
    """Return the RuntimeDirectory= names, whether to preserve them, and the .socket's ListenStream= values."""
    runtime_dirs = [base]
    preserve = False
    listen_streams: list[str] = []
    for bind in binds:
        if bind.startswith("unix:"):
            parent = PurePosixPath(bind[len("unix:") :]).parent
            rel = _under_run(parent)
            if socket:
                # The .socket unit creates the socket; the service's RuntimeDirectory= would delete it on stop.
                if rel is not None and (rel == base or rel.startswith(base + "/")):
                    preserve = True
                listen_streams.append(bind[len("unix:") :])
                continue
            if rel is None:
                if parent == PurePosixPath("/run"):
                    warnings.append(
                        f"{bind}: only root may create sockets directly in /run; "
                        f"use unix:/run/{base}/{base}.sock (unitctl adds it to RuntimeDirectory=)"
                    )
            elif rel not in runtime_dirs:
                if any(c.isspace() or c in "\"'\\%" for c in rel):
                    raise UsageError(
                        f"--bind {bind!r}: the directory /run/{rel} would have to be a RuntimeDirectory= name, "
                        "which cannot hold spaces, quotes, backslashes or '%'",
                        hint=f"use a plain directory, e.g. unix:/run/{base}/{base}.sock",
                    )
                # systemd creates nested RuntimeDirectory= paths too; Gunicorn creates no directories.
                runtime_dirs.append(rel)
        elif socket:
            listen_streams.append(bind)
    return runtime_dirs, preserve, listen_streams


def _gunicorn_argv(
    options: RenderOptions, *, venv: str | None, workers: int, worker_class: str | None, binds: Sequence[str], app: str
) -> list[str]:
    """Return the Gunicorn command line of the rendered ExecStart=."""
    gunicorn = f"{venv}/bin/gunicorn" if venv else "gunicorn"
    argv = [gunicorn, "--workers", str(workers)]
    if worker_class:
        argv += ["--worker-class", worker_class]
    if not options.socket:
        # With socket activation Gunicorn takes the listening fds from LISTEN_FDS; no --bind then.
        for bind in binds:
            argv += ["--bind", bind]
    if not options.control_socket:
        argv.append("--no-control-socket")
    argv.append(app)
    return argv


def exec_line(argv: Sequence[str]) -> str:
    """Quote ``argv`` for ``ExecStart=`` so that systemd runs exactly these words."""
    from unitctl.execline import join

    if "$" in argv[0]:
        # systemd never expands variables in the executable path, and "$$" there would stay "$$".
        raise UsageError(f"the executable path {argv[0]!r} contains '$'", hint="use a path without '$'")
    # On load systemd resolves %-specifiers in every word and, at start, $VAR / $$ in the arguments:
    # doubling both makes every value literal.
    words = [argv[0].replace("%", "%%")] + [a.replace("%", "%%").replace("$", "$$") for a in argv[1:]]
    return join(words)


def validate_name(name: str) -> str:
    """Return the unit's base name (without ``.service``) or raise UsageError."""
    from unitctl.unitname import validate_unit_name

    full = validate_unit_name(name)
    if not full.endswith(".service"):
        raise UsageError(f"--name {name!r} must name a .service unit", hint="e.g. --name myapp")
    base = full[: -len(".service")]
    if "@" in base:
        raise UsageError(
            f"--name {name!r} is a template/instance name; render makes plain units",
            hint="use a name without '@'",
        )
    return base


def validate_app(app: str) -> str:
    """Return ``app`` if it is Gunicorn's MODULE:VARIABLE form, else raise UsageError."""
    module, sep, variable = app.partition(":")
    if not sep or not _MODULE.match(module) or not _VARIABLE.match(variable):
        raise UsageError(
            f"--app {app!r} is not MODULE:VARIABLE",
            hint="e.g. --app myproject.wsgi:application or --app app:create_app()",
        )
    return app


# Gunicorn's own worker classes by their short names (gunicorn.workers.SUPPORTED_WORKERS; eventlet went in 26.0).
GUNICORN_WORKER_CLASSES = ("sync", "gthread", "gevent", "tornado")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
# uvicorn deprecated its bundled worker in 0.30: the uvicorn-worker package carries it on.
_DEPRECATED_CLASSES = {"uvicorn.workers.UvicornWorker": "uvicorn_worker.UvicornWorker (package uvicorn-worker)"}


def validate_worker_class(value: str | None) -> tuple[str | None, str | None]:
    """Return the worker class for ``--worker-class`` (a Gunicorn name or MODULE.CLASS) and a warning, if any."""
    if value is None:
        return None, None
    if value == "eventlet":
        raise UsageError("--worker-class eventlet was removed in Gunicorn 26.0", hint="use gevent or gthread")
    if value not in GUNICORN_WORKER_CLASSES and not _DOTTED.match(value):
        raise UsageError(
            f"--worker-class {value!r} is neither one of Gunicorn's ({', '.join(GUNICORN_WORKER_CLASSES)}) "
            "nor a MODULE.CLASS path",
            hint="e.g. --worker-class uvicorn_worker.UvicornWorker for FastAPI",
        )
    if value in _DEPRECATED_CLASSES:
        return value, f"{value} is deprecated by uvicorn since 0.30; use {_DEPRECATED_CLASSES[value]}"
    return value, None


def validate_bind(bind: str, *, socket: bool = False) -> str:
    """Return ``bind`` if it is host:port, [v6]:port, unix:/abs/path or fd://N, else raise UsageError."""
    hint = "use HOST:PORT, [IPv6]:PORT, unix:/absolute/path or fd://N"
    if bind.startswith("unix:"):
        path = bind[len("unix:") :]
        _check_abs(path, f"--bind {bind!r}")
        return bind
    if bind.startswith("fd://"):
        if socket:
            raise UsageError(
                f"--bind {bind!r} cannot be combined with socket activation (the default)",
                hint="give the addresses the .socket unit should listen on, or pass --no-socket",
            )
        if not bind[len("fd://") :].isdigit():
            raise UsageError(f"--bind {bind!r}: fd://N needs a file descriptor number", hint=hint)
        return bind
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"--bind {bind!r} needs a port between 1 and 65535", hint=hint)
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise UsageError(f"--bind {bind!r}: {host} is not an IPv6 address", hint=hint) from None
        return bind
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise UsageError(f"--bind {bind!r}: {host!r} is not a host name or address", hint=hint) from None
        if socket:
            # systemd does not resolve names in ListenStream=.
            raise UsageError(
                f"--bind {bind!r}: a .socket unit needs an IP address, not the name {host!r}",
                hint="e.g. --bind 127.0.0.1:8000, or pass --no-socket to let Gunicorn resolve it",
            ) from None
    return bind


def _under_run(path: PurePosixPath) -> str | None:
    """Return ``path`` relative to /run when it lies strictly below it (a RuntimeDirectory= name)."""
    try:
        rel = path.relative_to("/run")
    except ValueError:
        return None
    return None if str(rel) == "." else str(rel)


def _check_line(value: str, flag: str) -> None:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise UsageError(f"{flag} {value!r} contains a control character", hint="remove it")


def _check_abs(path: str, what: str) -> None:
    _check_line(path, what)
    if not path.startswith("/"):
        raise UsageError(f"{what} must be an absolute path, not {path!r}", hint="start it with /")
    if path != path.strip() or os.path.normpath(path) != path.rstrip("/") or path.startswith("//"):
        raise UsageError(
            f"{what} must be a normalized absolute path (no '..', '.', '//' or surrounding spaces)",
            hint=f"e.g. {os.path.normpath(path.strip())}",
        )


def validate_path(path: str, flag: str) -> str:
    """Return ``path`` without a trailing slash if it is absolute and normalized, else raise UsageError."""
    _check_abs(path, f"{flag} {path!r}" if path.startswith("/") else flag)
    return path.rstrip("/") or "/"


def _env_file(path: str) -> str:
    # systemd's own syntax: a leading '-' means "ignore if missing".
    optional = path.startswith("-")
    clean = validate_path(path[1:] if optional else path, "--env-file")
    return f"-{clean}" if optional else clean


def validate_user(value: str, flag: str) -> str:
    """Return a user or group name systemd accepts, else raise UsageError."""
    if not _USER.match(value):
        raise UsageError(
            f"{flag} {value!r} is not a valid user or group name",
            hint="use letters, digits, '_', '-' or '.', starting with a letter or '_'",
        )
    return value


def validate_env_name(name: str) -> str:
    """Return ``name`` if it is a valid environment variable name, else raise UsageError."""
    if not is_env_name(name):
        raise UsageError(f"--env {name!r} is not a valid variable name", hint="use letters, digits and '_' (KEY=VALUE)")
    return name


def validate_env_value(name: str, value: str) -> str:
    """Return ``value`` unless systemd would reject it (control characters other than tab)."""
    if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
        raise UsageError(
            f"--env {name}: the value contains a control character",
            hint="put multi-line values in an --env-file",
        )
    return value


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    """Parse repeated ``KEY=VALUE`` flags (last one wins for a key)."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--env {pair!r} is not KEY=VALUE", hint="e.g. --env DJANGO_SETTINGS_MODULE=prod")
        result[validate_env_name(key)] = validate_env_value(key, value)
    return result


def escape_specifiers(value: str) -> str:
    """Double every ``%`` so systemd's specifier expansion gives back ``value``."""
    return value.replace("%", "%%")


def quote_env(key: str, value: str) -> str:
    """Return one ``Environment=`` word that systemd reads back as ``KEY=value``."""
    # config_parse_environ: extract_first_word(UNQUOTE|CUNESCAPE), then specifier expansion.
    out = ['"']
    for ch in f"{key}={value}":
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\t":
            out.append("\\t")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# -- the file-reading edge: templates and unitctl.toml (render() above takes their text) -------------------------


def load_template(name: str) -> str:
    """Return a built-in template's text: the installed package data first, then the checkout."""
    from importlib import resources

    try:
        ref = resources.files("unitctl").joinpath("templates", name)
        if ref.is_file():
            return ref.read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError, NotADirectoryError):
        pass
    # Editable install / checkout: templates/ sits at the repository root, next to src/.
    repo = Path(__file__).resolve().parents[2] / "templates" / name
    try:
        return repo.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(
            f"built-in template {name} not found in the package or at {repo}",
            hint="reinstall unitctl",
        ) from exc


def read_user_template(path: Path) -> str:
    """Return the text of a user's ``--template`` file."""
    from unitctl.fsutil import read_input

    try:
        return read_input(path, what="template file", hint="check the --template path").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the template is not UTF-8 text", hint="save it as UTF-8") from exc


def render_from_flags(flags: RenderFlags, *, cpu_count: int | None, cwd: Path | None = None) -> Rendered:
    """Merge ``flags`` over ``unitctl.toml``'s [render] table, load the templates and render."""
    from unitctl import config

    cfg = config.load(cwd=cwd)
    file_values = cfg.section("render", config.RENDER_SCHEMA) if cfg else {}
    values = config.merge(flags.given(), file_values)
    # --env merges per variable: the file's variables stay unless a flag sets the same name.
    env = {validate_env_name(k): validate_env_value(k, v) for k, v in (values.get("env") or {}).items()}
    env.update(parse_env(flags.env))
    missing = [flag for key, flag in (("name", "--name"), ("app", "--app")) if not values.get(key)]
    if missing:
        raise UsageError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required",
            hint="pass the flag or set it in the [render] table of unitctl.toml",
        )
    workers = values.get("workers")
    options = RenderOptions(
        name=values["name"],
        app=values["app"],
        workers=parse_workers(workers) if isinstance(workers, str) else (workers or DEFAULT_WORKERS),
        max_workers=values.get("max_workers"),
        worker_class=values.get("worker_class"),
        binds=tuple(values.get("bind") or ()),
        working_dir=values.get("working_dir"),
        venv=values.get("venv"),
        user=values.get("user"),
        group=values.get("group"),
        env_files=tuple(values.get("env_file") or ()),
        env=env,
        socket=values.get("socket") is not False,
        control_socket=values.get("control_socket") is not False,
        description=values.get("description"),
    )
    template = values.get("template")
    service_template = read_user_template(Path(template)) if template else load_template(SERVICE_TEMPLATE)
    return render(
        options,
        cpu_count=cpu_count,
        service_template=service_template,
        socket_template=load_template(SOCKET_TEMPLATE),
        service_template_path=Path(template) if template else None,
    )
