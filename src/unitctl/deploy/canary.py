"""The canary: the new release started beside the live one, as the service, and judged before the switch.

How the live service is kept off the new code until the switch:

- The new revision is checked out into a git worktree, the *canary tree* (``$UNITCTL_CANARY_DIR``, default
  /var/lib/unitctl/canary, ``/<unit stem>/work/tree``), by git running as the checkout's owner, hooks off. The live
  checkout is switched only in the switch phase, right before the restart: a worker the live master respawns
  meanwhile (--max-requests, a crash) loads the old release.
- The checkout's top-level entries the new revision does not track (``.env``, ``venv/``, ``instance/``...) show in
  the canary tree as symlinks to ``<dir>/live/checkout/NAME``. On the host ``<dir>/live/checkout`` is a symlink to
  the live checkout (a build run in the canary tree finds them); in the canary's mount namespace ``<dir>/live`` is
  an empty read-only tmpfs with the live checkout bound read-only at ``checkout``. Nothing is copied.
- The pre-import check and the canary unit see the canary tree at the checkout's own path (``BindPaths=``), so the
  unit's absolute paths (the venv in the checkout, ``--chdir``, ``--pythonpath``) mean what they mean for the service.
- The canary unit (``unitctl-run-<stem>-canary.service``) runs with the service's User, Group, WorkingDirectory,
  Environment, EnvironmentFile and Gunicorn argv, except: its binds are replaced by a unix socket in its own
  ``RuntimeDirectory=`` (/run/unitctl/canary/<stem>/, also its XDG_RUNTIME_DIR, so Gunicorn's control socket does
  not collide with the live one), its own pid file, and one worker (enough to judge the import and the readiness,
  with bounded memory). A socket-activated service's canary binds that socket itself.
- The guard judges it (its unit state, and the readiness URL's path and Host asked over its socket); then it is
  stopped. The unit and the tree are undo resources registered before they exist: every way out, a kill -9 too
  (the next command's recovery), removes them.

Limits (docs/canary-and-guard.md, "The canary"): the shared entries are the live ones (a build writing into
venv/ writes the live venv); inside the canary the checkout's ``.git`` is a file pointing into the live git
directory (an app running git sees the worktree); an app with a fixed port or a singleton in its code
needs ``--no-canary``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from unitctl.deploy import signals
from unitctl.deploy.attempt import Attempt, Watched, guard_phase, journal_excerpt
from unitctl.deploy.capture import transient_prefix
from unitctl.deploy.undo import Resource, Undo
from unitctl.errors import RefusedError, UnitctlError
from unitctl.gitrepo import GitRepo, regenerable
from unitctl.gunicorn import Invocation
from unitctl.systemd.base import SystemdBackend, TransientSpec

CANARY_DIR_ENV = "UNITCTL_CANARY_DIR"
DEFAULT_CANARY_DIR = Path("/var/lib/unitctl/canary")
RUN_DIR = "unitctl/canary"  # under /run: the canary's RuntimeDirectory= parent
# The canary stops itself (RuntimeMaxSec=) this long after its deploy's readiness budget: a safety net behind the undo.
LIFETIME_MARGIN = 120.0
# Options of the service's command the canary does not take over: where it listens, its pid file, its worker
# count (set anew below), and daemonizing (the canary's main process must stay the master).
_REPLACED = ("bind", "pidfile", "workers", "daemon")


def stem(unit: str) -> str:
    """Return the unit's name as it appears in the canary's paths (no suffix, only [A-Za-z0-9_.-])."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", unit.rsplit(".", 1)[0])


def unit_name(unit: str) -> str:
    """Return the canary unit's name: under the check units' prefix, so leftovers are removed by name too."""
    return f"{transient_prefix(unit)}canary.service"


def canary_dir(unit: str) -> Path:
    """Return the directory that holds the canary tree of ``unit`` (owned by root; its tree by the checkout's owner)."""
    return Path(os.environ.get(CANARY_DIR_ENV) or DEFAULT_CANARY_DIR) / stem(unit)


def runtime_dir(unit: str) -> str:
    """Return the canary's RuntimeDirectory= (relative to /run)."""
    return f"{RUN_DIR}/{stem(unit)}"


def socket_path(unit: str) -> str:
    """Return the unix socket the canary listens on."""
    return f"/run/{runtime_dir(unit)}/canary.sock"


@dataclass(frozen=True)
class Tree:
    """The canary's checkout of the new revision and how its mount namespace shows it."""

    path: Path  # the worktree
    live: Path  # the live checkout: where the canary sees the worktree
    link: Path  # the live checkout as the worktree's symlinks reach it (host: a symlink; canary: a read-only bind)

    def namespace(self, *, writable: bool = False) -> dict[str, tuple[tuple[str, str], ...] | tuple[str, ...]]:
        """Return the TransientSpec mounts that show this tree at the live checkout's path.

        ``writable``: the live checkout's shared entries (venv/, .env, a sqlite file) can be written through the
        tree's links, as a hook needs (pip installs into the venv, a migration writes the database); the canary
        itself only reads them.
        """
        tree_bind = (str(self.path), str(self.live))
        live_bind = (str(self.live), str(self.link))
        return {
            "binds": (tree_bind, live_bind) if writable else (tree_bind,),
            "ro_binds": () if writable else (live_bind,),
            "temporary_fs": (str(self.link.parent),),
        }


def shared_entries(live: Iterable[str], tracked: Iterable[str], new_tree: Iterable[str]) -> list[str]:
    """Return the live checkout's top-level entries the canary tree links to (pure).

    Those the live revision does not track (``.env``, ``venv/``, ``instance/``) and the new revision does not have;
    never ``.git`` nor bytecode (the new code compiles its own).
    """
    skip = {".git", *tracked, *new_tree}
    return sorted(name for name in live if name not in skip and not regenerable(name))


def canary_argv(argv: Iterable[str], uses: Iterable[tuple[str, int, int | None, bool]], *, after: int,
                before: int | None, socket: str, pidfile: str) -> list[str]:  # fmt: skip
    """Return the service's Gunicorn words for the canary (pure).

    ``uses`` are (setting, index, value index, in a cluster of short flags) of the parsed options; the words of
    ``_REPLACED`` settings go, then ``--bind unix:SOCKET --pid PIDFILE --workers 1`` is added at the end of the
    options (before a ``--`` at index ``before``, never before the executable at ``after``), so its values win.
    """
    words = list(argv)
    drop: set[int] = set()
    for setting, index, value_index, cluster in uses:
        if setting not in _REPLACED:
            continue
        if cluster:
            if setting == "bind":
                raise RefusedError(
                    f"cannot give the canary its own address: -b is inside a cluster of short options ({words[index]})",
                    hint="write the bind as --bind ADDRESS in the unit, or pass --no-canary",
                )
            continue  # the option added below comes later and wins
        drop.add(index)
        if value_index is not None:
            drop.add(value_index)
    added = ["--bind", f"unix:{socket}", "--pid", pidfile, "--workers", "1"]
    end = before if before is not None else len(words)
    if end <= after:
        end = after + 1
    kept_head = [w for i, w in enumerate(words[:end]) if i not in drop]
    kept_tail = [w for i, w in enumerate(words[end:], start=end) if i not in drop]
    return [*kept_head, *added, *kept_tail]


def canary_command(inv: Invocation, *, socket: str, pidfile: str) -> list[str]:
    """Return the canary's command from the service's parsed Gunicorn command (pure)."""
    uses = [(u.setting, u.index, u.value_index if u.value_index != u.index else None, u.cluster) for u in inv.args.uses]
    return canary_argv(inv.argv, uses, after=inv.exe_index, before=inv.args.double_dash, socket=socket, pidfile=pidfile)


def wanted(att: Attempt) -> str | None:
    """Return why this deploy runs no canary, or None when it runs one."""
    req = att.req
    if req.dry_run:
        return "a dry run starts nothing"
    if req.command == "rollback":
        return "a rollback returns to the last good release"
    if not req.canary:
        return "--no-canary"
    if not req.guarded or not req.ready_url:
        return "no readiness URL to judge it by (the apply is not guarded)"
    return None


def prepare_tree(att: Attempt, rev: str) -> Tree:
    """Check ``rev`` out into the canary tree (registered as an undo first) with the live untracked entries linked."""
    repo = att.repo
    assert repo is not None
    live = Path(os.path.abspath(repo.path))
    where = canary_dir(att.req.unit)
    # work/ is the owner's (git, as the owner, creates and removes the tree in it); where/ and live/ are root's.
    work = where / "work"
    tree = Tree(path=work / "tree", live=live, link=where / "live" / "checkout")
    att.step("worktree", Undo("worktree", repo=str(live), path=str(tree.path)))
    with att.phase("worktree") as detail:
        owner = repo.user
        where.mkdir(mode=0o755, parents=True, exist_ok=True)
        if where.is_symlink() or where.stat().st_uid != os.geteuid():
            raise RefusedError(f"{where} is not unitctl's own directory", hint=f"remove it or set {CANARY_DIR_ENV}")
        work.mkdir(mode=0o755, exist_ok=True)
        if work.is_symlink() or not work.is_dir():
            raise RefusedError(f"{work} is not a directory", hint=f"remove it or set {CANARY_DIR_ENV}")
        if owner.switch:
            os.chown(work, owner.uid, owner.gid, follow_symlinks=False)
        if os.path.lexists(tree.path):
            repo.remove_worktree(tree.path)  # a killed run's, whose journal was lost
        repo.add_worktree(tree.path, rev)
        tree.link.parent.mkdir(mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            tree.link.unlink()
        tree.link.symlink_to(live)
        names = shared_entries(os.listdir(live), repo.top_level_tracked(), os.listdir(tree.path))
        # Made by the owner, in the owner's tree: root writes nothing in a directory another user controls.
        repo.link_into(tree.path, [str(tree.link / name) for name in names])
        detail.append(f"{rev[:12]} in {tree.path}; linked from the live checkout: {', '.join(names) or 'nothing'}")
    return tree


def remove_tree(undo: Undo) -> None:
    """Remove a canary tree (the worktree, its git metadata, the link to the live checkout)."""
    assert undo.repo is not None and undo.path is not None
    path = Path(undo.path)
    GitRepo(Path(undo.repo)).remove_worktree(path)
    with contextlib.suppress(FileNotFoundError):
        (path.parent.parent / "live" / "checkout").unlink()


def spec(att: Attempt, tree: Tree | None) -> TransientSpec:
    """Return the canary unit: the candidate's identity and Gunicorn command, its own socket, one worker."""
    from unitctl.preimport import as_service, service_view

    req, facts = att.req, att.facts
    assert facts is not None
    view = service_view(facts.candidate.decode("utf-8", "replace"), unit=req.unit, unit_dir=req.unit_dir)
    inv = view.invocation
    assert inv is not None
    run = f"/run/{runtime_dir(req.unit)}"
    argv = canary_command(inv, socket=socket_path(req.unit), pidfile=f"{run}/gunicorn.pid")
    out = replace(
        as_service(view, argv, timeout=req.ready_timeout + LIFETIME_MARGIN, expand_variables=view.expand_variables),
        env={**view.environment, "XDG_RUNTIME_DIR": run},
        unit_name=unit_name(req.unit),
        runtime_directory=runtime_dir(req.unit),
    )
    return replace(out, **tree.namespace()) if tree is not None else out  # type: ignore[arg-type]


def run(att: Attempt, tree: Tree | None) -> None:
    """Start the canary, judge it with the guard; raise RefusedError (exit 3) unless it is ready. Always stop it."""
    req, backend = att.req, att.edges.backend
    assert req.ready_url is not None
    name = unit_name(req.unit)
    rev = (att.plan.to_rev if att.plan is not None else None) or "the new release"
    canary = spec(att, tree)
    att.step("canary", Undo("canary", name=name))
    try:
        backend.start_transient(canary)
        probe = att.edges.canary_probe_factory(req.ready_url, socket_path(req.unit))
        watched = Watched(name, probe, f"waiting for the canary at {socket_path(req.unit)}")
        outcome = guard_phase(att, "canary", req.ready_timeout, fail_after=req.fail_after, other=watched)
        if not outcome.ready:
            att.record.journal = journal_excerpt(att, name, outcome.last_state)
            for line in att.record.journal[-10:]:
                att.reporter.line(f"  canary: {line}")
            raise RefusedError(
                f"{req.unit}: the canary of {rev[:12]} was not ready: {outcome.reason}; "
                "the live service was not touched",
                hint=f"fix the release (its journal is in 'unitctl history {req.unit.removesuffix('.service')}')",
            )
    finally:
        remove(att, "canary")


def remove(att: Attempt, *resources: Resource) -> None:
    """Stop the canary and remove its tree (those of ``resources`` registered, default both), then forget their undo."""
    chosen: tuple[Resource, ...] = resources or ("canary", "worktree")
    with signals.held(att.edges.install_signal_handlers) as noted:  # a Ctrl-C must not leave half a canary
        for resource in chosen:
            _remove_one(att, resource)
    if noted:
        # Held off, not ignored: the deploy stops as it would have (unless a rollback already holds them).
        raise signals.Interrupted(noted[0])


def _remove_one(att: Attempt, resource: Resource) -> None:
    undo = att.undo.get(resource)
    if undo is None:
        return
    try:
        release(att.edges.backend, undo)
    except (UnitctlError, OSError) as exc:
        att.reporter.line(f"warning: could not remove the canary's {resource}: {exc}")
        return
    att.unregister(resource)


def release(backend: SystemdBackend, undo: Undo) -> None:
    """Undo one canary resource: stop and forget the unit, or remove the tree."""
    if undo.resource == "canary" and undo.name:
        backend.remove_transient_units(undo.name.removesuffix(".service"))
    elif undo.resource == "worktree":
        remove_tree(undo)
