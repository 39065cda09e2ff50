"""The data of a deploy: the request, the facts captured once, and the pure plan made from them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from unitctl import fsutil, history
from unitctl.deploy.progress import Reporter
from unitctl.errors import UsageError
from unitctl.gitrepo import RollbackTarget
from unitctl.guard import DEFAULT_FAIL_AFTER
from unitctl.history import Record
from unitctl.probe import ProbeResult
from unitctl.rewrite import RewriteSpec
from unitctl.systemd.base import SystemdBackend, UnitState
from unitctl.unitpath import WriteTarget

Strategy = Literal["auto", "restart", "reload"]
Action = Literal["none", "restart", "reload"]
STRATEGIES = ("auto", "restart", "reload")
# A graceful HUP when only the code changed: no refused connection during a good deploy (issue 10).
DEFAULT_STRATEGY: Strategy = "auto"


def parse_strategy(value: str) -> Strategy:
    """Return ``value`` as a Strategy; raise UsageError for anything else (flags and unitctl.toml alike)."""
    if value not in STRATEGIES:
        raise UsageError(
            f"--strategy must be one of {', '.join(STRATEGIES)}, not {value!r}",
            hint="auto reloads when only the code changed and restarts otherwise",
        )
    return cast(Strategy, value)


DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_READY_TIMEOUT = 60.0
DEFAULT_READY_INTERVAL = 0.5
# How long one hook (--build-cmd, --pre-switch-cmd, --post-ready-cmd) may run before systemd kills it.
DEFAULT_HOOK_TIMEOUT = 600.0
# The rollback's readiness check never waits less than this, nor less than twice what the previous release needed.
ROLLBACK_READY_FLOOR = 20.0

# Every step a deploy announces in its journal before acting (and where the fault hook may pause it), in order.
STEPS = (
    "lock",
    "capture",
    "ready-url",
    "verify",
    "worktree",
    "build",
    "pre-import",
    "canary",
    "pre-switch",
    "unit-write",
    "socket-write",
    "daemon-reload",
    "socket-enable",
    "socket-restart",
    "checkout",
    "live-build",
    "restart",
    "guard",
    "post-ready",
    "rollback-checkout",
    "rollback-unit",
    "rollback-socket",
    "rollback-daemon-reload",
    "rollback-restart",
    "rollback-guard",
    "record",
)


@dataclass(frozen=True)
class ApplyRequest:
    """Everything a deploy was asked to do (flags merged over unitctl.toml)."""

    unit: str  # validated unit name, e.g. app.service
    unit_file: Path | None = None  # None: keep the installed unit
    unit_bytes: bytes | None = None  # the unit to deploy given as bytes (rollback from history, --render)
    socket_bytes: bytes | None = None  # the NAME.socket installed next to it (--render, socket activation)
    rewrite: RewriteSpec | None = None  # deploy the installed unit rewritten (--workers/--max-workers/--no-preload)
    guarded: bool = True
    repo: Path | None = None
    rev: str | None = None
    ready_url: str | None = None
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    ready_interval: float = DEFAULT_READY_INTERVAL
    strategy: Strategy = DEFAULT_STRATEGY
    pre_import: str | None = None  # MODULE:VAR; None: gunicorn --check-config
    no_pre_import: bool = False
    canary: bool = True  # start the new release beside the live one and judge it before the switch (guarded only)
    # Hooks (deploy/hooks.py), each a command line run as the service: after each checkout; in the canary's tree
    # before the switch; after the guard said ready.
    build_cmd: tuple[str, ...] = ()
    pre_switch_cmd: tuple[str, ...] = ()
    post_ready_cmd: tuple[str, ...] = ()
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT
    dry_run: bool = False
    edit_template: bool = False  # an instance app@1.service may change its template app@.service
    history_dir: Path = history.DEFAULT_DIR
    unit_dir: Path = DEFAULT_UNIT_DIR
    command: str = "apply"  # apply | rollback
    successes_needed: int = 3
    fail_after: int = DEFAULT_FAIL_AFTER  # consecutive HTTP non-2xx answers that fail the release early; 0: off
    argv: tuple[str, ...] = ()


class Verifier(Protocol):
    def __call__(self, path: Path, *, name: str | None = None) -> Any: ...  # -> VerifyReport(.errors, .warnings)


def uds_probe(url: str, uds: str) -> Callable[[], ProbeResult]:
    """Return a probe of ``url``'s path and Host over the unix socket ``uds`` (the canary's)."""
    from unitctl.probe import Probe

    return Probe(url, uds=uds).check


@dataclass
class Edges:
    """The side-effect edges a transaction goes through (real ones by default, fakes in unit tests)."""

    backend: SystemdBackend
    probe_factory: Callable[[str], Callable[[], ProbeResult]]
    verifier: Verifier | None = None
    reporter: Reporter | None = None  # None: one on stderr
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    install_signal_handlers: bool = True
    # The canary's probe: (the readiness URL, the canary's unix socket) -> a probe of that URL's path over the socket.
    canary_probe_factory: Callable[[str, str], Callable[[], ProbeResult]] = uds_probe


@dataclass(frozen=True)
class Facts:
    """What the world looked like before the deploy touched anything: captured once, never re-read."""

    unit: str
    unit_path: Path  # where the unit change is written (decided by capture.unit_target)
    installed: fsutil.FileSnapshot  # the unit file there: bytes, mode, owner, or absent (what an undo restores)
    loaded: bytes | None  # the unit systemd runs now (a vendor copy's vendor file; None: a new unit)
    target: WriteTarget  # where the change is written and what undoing it means (unitpath.resolve)
    state: UnitState  # systemd's view: active state, MainPID, NeedDaemonReload, FragmentPath, drop-ins
    candidate: bytes  # the unit to deploy
    preload: bool  # the candidate's Gunicorn preloads the app (its effective setting; unknown counts as yes)
    head: str | None  # the checkout's HEAD (it was clean)
    to_rev: str | None  # the revision to deploy
    deployed_rev: str | None  # the revision of the last good deploy recorded in the history
    rollback: RollbackTarget | None  # the revision to return to
    previous_ready_seconds: float | None  # how long the last good release needed to become ready
    # The revision the running process was started from: a recorded attempt that left this InvocationID running.
    running_rev: str | None = None
    running_unrecorded: bool = False  # deploys record their process, but none started the one running now
    running_ready: bool | None = None  # one probe of the running release (asked only when nothing else changed)
    tree_reason: str = ""  # why the checkout is not simply at HEAD (interrupted, stale lock, changed files), or ""
    # Socket activation (--render): the NAME.socket file next to the unit as it was, and the one to install.
    socket: fsutil.FileSnapshot | None = None
    socket_candidate: bytes | None = None
    socket_active: bool = False  # systemd listens on it now
    reloadable: bool = True  # the candidate has an ExecReload= (a HUP is possible at all)


@dataclass(frozen=True)
class Switch:
    """What decides how to switch to the new release: the strategy asked for and what changed and runs."""

    strategy: Strategy
    unit_changed: bool
    code_changed: bool
    preload: bool
    was_active: bool
    stale_reload: bool = False
    running_unrecorded: bool = False
    running_ready: bool | None = None
    master_alive: bool = True
    reloadable: bool = True


def choose_action(switch: Switch) -> tuple[Action, str]:
    """Decide how to switch to the new release and say why."""
    strategy, preload, reloadable = switch.strategy, switch.preload, switch.reloadable
    if not switch.was_active:
        return "restart", "the service is not running: start it"
    if switch.unit_changed:
        if strategy == "reload":
            return "restart", "the unit changed: a reload would not apply it, restarting"
        return "restart", "the unit changed"
    if switch.stale_reload:
        return "restart", "systemd has not loaded the unit on disk (NeedDaemonReload=yes): daemon-reload and restart"
    if not switch.code_changed:
        if switch.running_unrecorded:
            return "restart", "the running process was not started by a recorded deploy: restart it under the guard"
        if switch.running_ready is False:
            return "restart", "the running release does not answer ready: restart it under the guard"
        return "none", "the unit and the code are what is deployed and running"
    if strategy == "restart":
        return "restart", "code changed (--strategy restart)"
    if not switch.master_alive:
        return "restart", "code changed and the service has no main process to send a HUP to"
    if not reloadable:
        if strategy == "reload":
            raise UsageError(
                "--strategy reload needs an ExecReload= in the unit: 'systemctl reload' fails without one",
                hint="add ExecReload=/bin/kill -s HUP $MAINPID, or use --strategy auto",
            )
        return "restart", "code changed and the unit has no ExecReload= to send a HUP with"
    if preload:
        if strategy == "reload":
            raise UsageError(
                "--strategy reload cannot load new code: Gunicorn runs with --preload, so a HUP keeps the old app",
                hint="use --strategy restart (or auto), or drop --preload",
            )
        return "restart", "code changed and Gunicorn preloads the app: a HUP would keep the old code"
    return "reload", "only the code changed and Gunicorn does not preload: graceful reload (HUP)"


def choose_rollback_action(
    strategy: Strategy,
    *,
    unit_restored: bool,
    preload: bool,
    reloadable: bool,
    state: UnitState,
    switched_invocation: str | None,
) -> tuple[Action, str]:
    """Decide how the rollback brings the previous release back (the same rules as the deploy) and say why.

    A HUP only when the unit systemd runs is the one the undo leaves (none put back), Gunicorn does not preload,
    and the master the deploy switched is still alive: active, with a main process, the same InvocationID.
    """
    if strategy == "restart":
        return "restart", "--strategy restart"
    if unit_restored:
        return "restart", "the unit file was put back"
    if not (state.active_state == "active" and state.main_pid > 0):
        return "restart", f"the service is {state.active_state}/{state.sub_state}, MainPID {state.main_pid}"
    if not switched_invocation or state.invocation_id != switched_invocation:
        return "restart", "the master is not the one the deploy switched (it was started again)"
    if preload:
        return "restart", "Gunicorn preloads the app: a HUP would keep the failed release's code"
    if not reloadable:
        return "restart", "the unit has no ExecReload="
    return "reload", "the unit is unchanged and the master is alive: graceful reload (HUP)"


@dataclass(frozen=True)
class Plan:
    """What a deploy will do, decided from the captured facts and the request."""

    unit: str
    unit_path: str
    unit_changed: bool
    first_deploy: bool  # systemd knew nothing of the unit: a failed release is undone by removing it
    was_active: bool
    from_rev: str | None  # the revision to return to (last good)
    rollback_source: str | None
    to_rev: str | None  # the revision being deployed
    code_changed: bool
    preload: bool
    action: Action
    why: str
    candidate_sha256: str
    installed_sha256: str | None
    daemon_reload: bool = False  # the unit changed, or systemd has not loaded the one on disk
    socket_path: str | None = None  # the NAME.socket installed with the unit (socket activation)
    socket_changed: bool = False  # its bytes change: write it (a running socket is restarted: its fd is closed)

    @property
    def changes(self) -> bool:
        return self.action != "none"


@dataclass(frozen=True)
class PlanInput:
    """What the plan is decided from: the unit and socket as installed and as rendered, the revisions, the state."""

    unit: str
    unit_path: Path
    installed: bytes | None
    candidate: bytes
    state: UnitState
    deployed_rev: str | None
    rollback: RollbackTarget | None
    to_rev: str | None
    preload: bool
    strategy: Strategy
    running_rev: str | None = None
    running_unrecorded: bool = False
    running_ready: bool | None = None
    tree_reason: str = ""
    first_deploy: bool | None = None
    socket_path: Path | None = None
    socket_installed: bytes | None = None
    socket_candidate: bytes | None = None
    reloadable: bool = True


def make_plan(given: PlanInput) -> Plan:
    """Decide the plan (pure)."""
    # A .socket is only ever installed, never removed: no candidate means "leave whatever is there alone".
    socket_changed = given.socket_candidate is not None and given.socket_installed != given.socket_candidate
    unit_changed = given.installed != given.candidate
    # Without a recorded deploy the running code is unknown: treat the revision as new. A process known to run
    # another revision than the one to deploy (a rollback's, say) is a code change too.
    # A torn or changed tree is not at any revision: it needs a checkout, so the code counts as changed.
    code_changed = given.to_rev is not None and (
        given.to_rev != given.deployed_rev or given.running_rev not in (None, given.to_rev) or bool(given.tree_reason)
    )
    stale = given.state.need_daemon_reload and given.installed is not None
    action, why = choose_action(
        Switch(
            given.strategy,
            unit_changed=unit_changed or socket_changed,
            code_changed=code_changed,
            preload=given.preload,
            was_active=given.state.is_active,
            stale_reload=stale,
            running_unrecorded=given.running_unrecorded and given.state.is_active,
            running_ready=given.running_ready,
            master_alive=given.state.main_pid > 0,
            reloadable=given.reloadable,
        )
    )
    return Plan(
        unit=given.unit,
        unit_path=str(given.unit_path),
        unit_changed=unit_changed,
        first_deploy=given.installed is None if given.first_deploy is None else given.first_deploy,
        was_active=given.state.is_active,
        from_rev=given.rollback.rev if given.rollback else given.deployed_rev,
        rollback_source=given.rollback.source if given.rollback else None,
        to_rev=given.to_rev,
        code_changed=code_changed,
        preload=given.preload,
        action=action,
        why=why,
        candidate_sha256=fsutil.sha256(given.candidate),
        installed_sha256=fsutil.sha256(given.installed) if given.installed is not None else None,
        daemon_reload=unit_changed or stale or socket_changed,
        socket_path=str(given.socket_path)
        if given.socket_path is not None and given.socket_candidate is not None
        else None,
        socket_changed=socket_changed,
    )


def plan_from(facts: Facts, strategy: Strategy) -> Plan:
    """Decide the plan from the captured facts (pure)."""
    return make_plan(
        PlanInput(
            unit=facts.unit,
            unit_path=facts.unit_path,
            installed=facts.loaded,
            candidate=facts.candidate,
            state=facts.state,
            deployed_rev=facts.deployed_rev,
            rollback=facts.rollback,
            to_rev=facts.to_rev,
            preload=facts.preload,
            strategy=strategy,
            running_rev=facts.running_rev,
            running_unrecorded=facts.running_unrecorded,
            running_ready=facts.running_ready,
            tree_reason=facts.tree_reason,
            first_deploy=facts.target.first_deploy,
            socket_path=facts.socket.path if facts.socket is not None else None,
            socket_installed=facts.socket.data if facts.socket is not None else None,
            socket_candidate=facts.socket_candidate,
            reloadable=facts.reloadable,
        )
    )


def rollback_ready_timeout(deploy_timeout: float, previous_ready_seconds: float | None) -> float:
    """Return how long the rollback waits for the previous release: its own budget, not the deploy's."""
    previous = 2 * previous_ready_seconds if previous_ready_seconds else 0.0
    return max(ROLLBACK_READY_FLOOR, previous, deploy_timeout)


@dataclass
class ApplyResult:
    """How an apply/rollback ended (the error, if any, is raised after the record is written)."""

    record: Record
    plan: Plan | None
    message: str
    exit_code: int

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.record.unit,
            "command": self.record.command,
            "outcome": self.record.outcome,
            "exit_code": self.exit_code,
            "message": self.message,
            "plan": asdict(self.plan) if self.plan else None,
            "record": self.record.to_json(),
        }
