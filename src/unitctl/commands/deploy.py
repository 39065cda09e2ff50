"""``unitctl deploy SERVICE``: the server's deploy step (what update_systemd_unit.sh did in bash).

Take the installed unit (systemd's FragmentPath) or ``--unit-file``, rewrite a copy of it (no ``--preload``,
strictly; ``--workers``), fetch the checkout if asked, then run the guarded apply on the copy: the same engine,
the same result printing, GitHub annotations and step summary as ``unitctl apply``. Settings come from the
flags over ``[deploy.SERVICE]`` over ``[deploy]`` of the server's unitctl.toml (``--config FILE``, else
/etc/unitctl/unitctl.toml), never from the current directory: a root deploy reads only root's file.

    s = resolve_settings(flags=..., config_file=None)   # every bad input raises here, before anything is asked
    result = run(settings=s, edges=real_edges(s.backend), out=sys.stdout)
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from unitctl import config
from unitctl.commands.apply import execute
from unitctl.commands.edges import real_edges
from unitctl.commands.report import current, emit
from unitctl.commands.settings import default_argv
from unitctl.config import Kind, Schema
from unitctl.deploy.model import (
    DEFAULT_HOOK_TIMEOUT,
    DEFAULT_READY_INTERVAL,
    DEFAULT_READY_TIMEOUT,
    DEFAULT_STRATEGY,
    DEFAULT_UNIT_DIR,
    ApplyRequest,
    Edges,
    Strategy,
    parse_strategy,
)
from unitctl.deploy.progress import safe_write
from unitctl.errors import GitStateError, RefusedError, UnitctlError, UsageError
from unitctl.guard import DEFAULT_FAIL_AFTER
from unitctl.gunicorn.workers import Workers
from unitctl.history import DEFAULT_DIR as DEFAULT_HISTORY_DIR

COMMAND = "deploy"
DEFAULT_REMOTE = "origin"

# What [deploy] and [deploy.SERVICE] may hold: the service's deploy, not one run's choices (rev, dry run, --json,
# --summary-stdout) nor the unit itself (a unit_file there would let whoever writes that file decide what runs).
DEPLOY_SCHEMA: Schema = {
    "repo": Kind.PATH,
    "fetch": Kind.BOOL,
    "remote": Kind.STR,
    "ready_url": Kind.STR,
    "ready_timeout": Kind.NUMBER,
    "ready_interval": Kind.NUMBER,
    "workers": Kind.WORKERS,
    "keep_preload": Kind.BOOL,
    "strategy": Kind.STR,
    "fail_after": Kind.COUNT,
    "pre_import": Kind.STR,
    "no_pre_import": Kind.BOOL,
    "canary": Kind.BOOL,
    "build_cmd": Kind.STR_LIST,
    "pre_switch_cmd": Kind.STR_LIST,
    "post_ready_cmd": Kind.STR_LIST,
    "hook_timeout": Kind.NUMBER,
    "history_dir": Kind.PATH,
    "backend": Kind.STR,
}


@dataclass(frozen=True)
class DeploySettings:
    """One deploy, flags merged over the settings file and checked."""

    unit: str  # validated, e.g. demoapp.service
    unit_file: Path | None = None  # start from this file instead of the installed unit (a first deploy)
    repo: Path | None = None
    rev: str | None = None
    fetch: bool = False
    remote: str = DEFAULT_REMOTE
    ready_url: str | None = None
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    ready_interval: float = DEFAULT_READY_INTERVAL
    workers: Workers | None = None  # None: keep the unit's
    keep_preload: bool = False
    strategy: Strategy = DEFAULT_STRATEGY
    fail_after: int = DEFAULT_FAIL_AFTER
    pre_import: str | None = None
    no_pre_import: bool = False
    canary: bool = True
    build_cmd: tuple[str, ...] = ()  # hooks (docs/hooks.md), run as the service
    pre_switch_cmd: tuple[str, ...] = ()
    post_ready_cmd: tuple[str, ...] = ()
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT
    history_dir: Path = DEFAULT_HISTORY_DIR
    backend: str = "auto"
    dry_run: bool = False
    edit_template: bool = False
    as_json: bool = False
    config_path: Path | None = None  # the settings file that was read, if any
    unit_dir: Path = DEFAULT_UNIT_DIR  # where apply installs units (another directory only in tests)


@dataclass(frozen=True)
class DeployResult:
    """How a deploy ended (failures raise their UnitctlError, as apply's do)."""

    unit: str
    exit_code: int
    source: Path  # the unit file the deploy started from
    rewritten: bool  # whether the copy was rewritten (--no-preload and/or --workers)


def service_name(value: str | None) -> str:
    """Return ``value`` as a validated NAME.service, or raise UsageError."""
    from unitctl.unitname import validate_unit_name

    if not value:
        raise UsageError("no SERVICE given", hint="e.g. 'unitctl deploy myapp' (see 'unitctl deploy --help')")
    unit = validate_unit_name(value)
    if not unit.endswith(".service"):
        raise UsageError(f"{value!r} is not a service", hint="pass e.g. myapp or myapp.service")
    return unit


def resolve_settings(*, flags: Mapping[str, Any], config_file: str | None) -> DeploySettings:
    """Merge the flags over ``[deploy.SERVICE]`` over ``[deploy]``; check every value before anything is asked."""
    from unitctl.gunicorn.workers import parse_workers
    from unitctl.probe import parse_target
    from unitctl.systemd import BACKENDS

    unit = service_name(flags.get("service"))
    cfg = config.load_server(Path(config_file) if config_file else None)
    s = config.merge(flags, cfg.service_section(COMMAND, unit, DEPLOY_SCHEMA) if cfg is not None else {})

    workers = parse_workers(str(s["workers"])) if s.get("workers") is not None else None
    repo = Path(s["repo"]) if s.get("repo") else None
    if repo is not None and not repo.is_dir():
        raise UsageError(f"--repo {repo}: no such directory", hint="pass the app's git checkout on this server")
    rev = s.get("rev") or None
    if rev is not None and repo is None:
        raise UsageError("--rev needs --repo DIR", hint="the checkout to switch (or repo in [deploy.SERVICE])")
    if rev is not None and rev.startswith("-"):
        raise UsageError(f"--rev {rev!r} is not a revision", hint="pass a commit hash, e.g. --rev ${{ github.sha }}")
    fetch = bool(s.get("fetch"))
    if fetch and repo is None:
        raise UsageError("--fetch needs --repo DIR", hint="the checkout to fetch into (or repo in [deploy.SERVICE])")
    remote = s.get("remote")
    remote = DEFAULT_REMOTE if remote is None else remote
    if not remote or remote.startswith("-"):
        raise UsageError(f"--remote {remote!r} is not a remote name", hint="e.g. --remote origin")
    unit_file = Path(s["unit_file"]) if s.get("unit_file") else None
    if unit_file is not None and not os.path.lexists(unit_file):
        raise UsageError(f"--unit-file {unit_file}: no such file", hint="pass the unit to start from")
    if s.get("ready_url"):
        parse_target(s["ready_url"])
    backend = s.get("backend") or "auto"
    if backend not in BACKENDS:
        raise UsageError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}", hint="fix backend")
    return DeploySettings(
        unit=unit,
        unit_file=unit_file,
        repo=repo.absolute() if repo else None,
        rev=rev,
        fetch=fetch,
        remote=remote,
        ready_url=s.get("ready_url") or None,
        ready_timeout=float(s.get("ready_timeout") or DEFAULT_READY_TIMEOUT),
        ready_interval=float(s.get("ready_interval") or DEFAULT_READY_INTERVAL),
        workers=workers,
        keep_preload=bool(s.get("keep_preload")),
        strategy=parse_strategy(s.get("strategy") or DEFAULT_STRATEGY),
        fail_after=DEFAULT_FAIL_AFTER if s.get("fail_after") is None else int(s["fail_after"]),
        pre_import=s.get("pre_import") or None,
        no_pre_import=bool(s.get("no_pre_import")),
        canary=s.get("canary") is not False,
        build_cmd=tuple(s.get("build_cmd") or ()),
        pre_switch_cmd=tuple(s.get("pre_switch_cmd") or ()),
        post_ready_cmd=tuple(s.get("post_ready_cmd") or ()),
        hook_timeout=float(s.get("hook_timeout") or DEFAULT_HOOK_TIMEOUT),
        history_dir=Path(s.get("history_dir") or DEFAULT_HISTORY_DIR),
        backend=backend,
        dry_run=bool(s.get("dry_run")),
        edit_template=bool(s.get("edit_template")),
        as_json=bool(s.get("as_json")),
        config_path=cfg.path if cfg is not None else None,
        unit_dir=DEFAULT_UNIT_DIR,
    )


def run(*, settings: DeploySettings, edges: Edges, out: IO[str]) -> DeployResult:
    """Rewrite a copy of the unit, fetch, then run the guarded apply on it; return how it ended or raise."""
    s = settings
    try:
        source, candidate, socket, rewritten = _candidate(s, edges)
        if s.fetch:
            _fetch(s)
    except UnitctlError as err:
        # apply never ran to report it: the same annotation and summary it would give (the CLI's one error
        # handler prints the line, and the --json envelope).
        _annotate(err, unit=s.unit)
        raise
    _say(f"guarded apply of {s.unit}" + (f" at {s.rev}" if s.rev else ""))
    request = ApplyRequest(
        unit=s.unit,
        unit_bytes=candidate,
        socket_bytes=socket,
        guarded=True,
        repo=s.repo,
        rev=s.rev,
        ready_url=s.ready_url,
        ready_timeout=s.ready_timeout,
        ready_interval=s.ready_interval,
        strategy=s.strategy,
        pre_import=s.pre_import,
        no_pre_import=s.no_pre_import,
        canary=s.canary,
        build_cmd=s.build_cmd,
        pre_switch_cmd=s.pre_switch_cmd,
        post_ready_cmd=s.post_ready_cmd,
        hook_timeout=s.hook_timeout,
        dry_run=s.dry_run,
        edit_template=s.edit_template,
        history_dir=s.history_dir,
        unit_dir=s.unit_dir,
        command=COMMAND,
        fail_after=s.fail_after,
        argv=default_argv(),
    )
    code = emit(execute(request, edges), as_json=s.as_json, out=out)
    return DeployResult(unit=s.unit, exit_code=code, source=source, rewritten=rewritten)


def _candidate(s: DeploySettings, edges: Edges) -> tuple[Path, bytes, bytes | None, bool]:
    """Return the unit file started from, the unit to deploy (rewritten), the NAME.socket beside it, rewritten?"""
    from unitctl.desired import rewrite_text, sibling_socket
    from unitctl.fsutil import read_unit_bytes
    from unitctl.rewrite import RewriteSpec
    from unitctl.unitfile import UnitFile

    source = s.unit_file
    if source is None:
        state = edges.backend.state(s.unit)
        if state.load_state != "loaded" or not state.fragment_path:
            raise RefusedError(
                f"{s.unit} is not installed (LoadState={state.load_state or 'unknown'})",
                hint="install it first or pass --unit-file FILE",
            )
        source = Path(state.fragment_path)
    data = read_unit_bytes(source, hint="check --unit-file" if s.unit_file else "check the installed unit")
    # A socket-activated service: the NAME.socket beside the unit travels with it (installed on a first deploy,
    # left alone when unchanged, so its listening fd stays open).
    socket = sibling_socket(source, s.unit)
    if s.keep_preload and s.workers is None:
        UnitFile.from_bytes(data, path=str(source))  # refuse what systemd would not load before anything else
        return source, data, socket, False
    # --strict: a gunicorn.conf.py that sets preload_app keeps preload on whatever the unit says: refuse.
    spec = RewriteSpec(workers=s.workers, no_preload=not s.keep_preload, cpu_count=os.cpu_count(),
                       strict=not s.keep_preload)  # fmt: skip
    original = data.decode("utf-8", "surrogateescape")
    text, warnings = rewrite_text(original, spec, path=str(source))
    for warning in warnings:
        safe_write(sys.stderr, f"unitctl: warning: {warning}\n")
    what = " ".join([*([] if s.keep_preload else ["--no-preload", "--strict"]), *_workers_flag(s.workers)])
    _say(f"rewrote a copy of {s.unit} (from {source}): {what}" + ("" if text != original else ": no changes"))
    if text != original:  # the CI log shows what the deploy changes in the unit, as 'unitctl rewrite' does
        from unitctl.diff import colourize, unified
        from unitctl.masking import mask_unit_text
        from unitctl.output import colour_enabled

        # Masked on both sides, as 'unitctl diff' shows a unit: a CI log is no place for a secret Environment=.
        lines = unified(mask_unit_text(original), mask_unit_text(text), old_name=str(source),
                        new_name=f"{s.unit} (to deploy)")  # fmt: skip
        for line in colourize(lines, colour_enabled(sys.stderr)):
            safe_write(sys.stderr, line)
    return source, text.encode("utf-8", "surrogateescape"), socket, True


def _workers_flag(workers: Workers | None) -> list[str]:
    return [] if workers is None else ["--workers", str(workers)]


def _fetch(s: DeploySettings) -> None:
    """Fetch the remote into the checkout as ``unitctl fetch`` does (as the checkout's owner, no hooks)."""
    from unitctl.gitrepo import GitRepo

    assert s.repo is not None
    _say(f"git fetch --tags {s.remote} in {s.repo} (as the checkout's owner)")
    repo = GitRepo(s.repo)
    repo.check_repo()
    try:
        repo.fetch(s.remote)
    except GitStateError as exc:
        raise GitStateError(
            f"fetching {s.remote} into {s.repo} failed: {exc.message}",
            hint="nothing was changed; check the remote and its credentials (git remote -v)",
        ) from exc


def _annotate(err: UnitctlError, *, unit: str | None) -> None:
    """Annotate a failure of deploy's own steps in GitHub Actions, as apply annotates its own."""
    from unitctl import github

    current().unit = unit or current().unit
    with contextlib.suppress(OSError, ValueError):
        github.emit_error(err, unit=unit, command=COMMAND)  # no-op outside GitHub Actions


def _say(text: str) -> None:
    from unitctl.masking import mask

    safe_write(sys.stderr, f"unitctl deploy: {mask(text)}\n")


@contextlib.contextmanager
def summary_on_stdout(enabled: bool) -> Iterator[None]:
    """With --summary-stdout: report as in GitHub Actions, everything on stderr, the step summary on stdout at the
    end (for a job that runs the deploy over SSH: ``ssh HOST ... >> "$GITHUB_STEP_SUMMARY"``)."""
    if not enabled:
        yield
        return
    real_stdout = sys.stdout
    saved = {key: os.environ.get(key) for key in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY")}
    with tempfile.TemporaryDirectory(prefix="unitctl-deploy-") as tmp:
        summary = Path(tmp) / "summary.md"
        summary.touch()
        # github.emit reads the environment, as it does for a step on a runner.
        os.environ["GITHUB_ACTIONS"] = "true"
        os.environ["GITHUB_STEP_SUMMARY"] = str(summary)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            safe_write(real_stdout, summary.read_text(encoding="utf-8", errors="replace"))


def cli_deploy(
    *,
    flags: Mapping[str, Any],
    apply_options: Callable[[], Mapping[str, Any]],
    as_json: bool,
    config_file: str | None,
    summary_stdout: bool,
) -> int:
    """Resolve the settings (the apply options parsed by ``apply_options``) and deploy with real edges.

    A bad option or setting is reported as any failure is: one line, and in GitHub Actions an annotation and a
    summary (on stdout with --summary-stdout), and apply's JSON error object with --json.
    """
    with summary_on_stdout(summary_stdout):
        try:
            s = resolve_settings(flags={**flags, "as_json": as_json, **apply_options()}, config_file=config_file)
        except UnitctlError as err:
            unit = None
            with contextlib.suppress(UnitctlError):
                unit = service_name(flags.get("service"))
            _annotate(err, unit=unit)
            raise
        return run(settings=s, edges=real_edges(s.backend), out=sys.stdout).exit_code


__all__ = ["DEPLOY_SCHEMA", "DeployResult", "DeploySettings", "cli_deploy", "resolve_settings", "run"]
