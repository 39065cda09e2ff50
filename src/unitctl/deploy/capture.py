"""Capture: what the world looks like before anything changes, read once into a frozen ``Facts``, and the plan."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from unitctl import fsutil, history, unitpath
from unitctl.deploy.attempt import Attempt, Detail, git_findings
from unitctl.deploy.model import ApplyRequest, Facts, plan_from, rollback_ready_timeout
from unitctl.errors import GitStateError, InputError, SystemdError
from unitctl.gitrepo import GitRepo, regenerable
from unitctl.history import Record
from unitctl.systemd.base import UnitState

TRANSIENT_PREFIX = "unitctl-run-"


def unit_target(req: ApplyRequest, state: UnitState) -> unitpath.WriteTarget:
    """Return where a change of ``req.unit`` is written so systemd reads it (the one seam for where units live)."""
    # Raises UnitPathError (exit 3) for what unitctl must not write: nothing has changed yet.
    return unitpath.resolve(req.unit, state, unit_dir=req.unit_dir, allow_template=req.edit_template)


def capture(att: Attempt) -> None:
    """Read the world once into ``att.facts`` and decide ``att.plan``; journal what a recovery needs."""
    req = att.req
    backend = att.edges.backend
    with att.phase("capture") as detail:
        removed = [] if req.dry_run else _remove_stale_checks(att)
        if removed:
            detail.append(f"removed {len(removed)} leftover check unit(s)")
        state = backend.state(req.unit)
        target = unit_target(req, state)
        snapshot = fsutil.snapshot(target.path)
        installed = unitpath.loaded_bytes(target)  # what systemd runs now: the vendor file for a vendor copy
        candidate = _candidate(req, target, installed, detail)
        socket, socket_candidate, socket_active = _socket_facts(att, target)
        records = history.read(req.history_dir, req.unit)
        last = history.last_good(records)
        deployed_rev = last.to_rev if last else None
        head: str | None = None
        tree_reason = ""
        to_rev: str | None = None
        rollback = None
        if req.repo is not None:
            att.repo = GitRepo(req.repo)
            att.repo.check_repo()
            head = att.repo.head()
            recorded = last.to_rev if last and last.repo == str(req.repo) else None
            rollback = att.repo.rollback_target(recorded)
            if rollback is None and not target.first_deploy:
                shallow = att.repo.is_shallow()
                raise GitStateError(
                    f"{req.repo}: no revision to roll back to (no deploy recorded, no ORIG_HEAD, reflog or parent"
                    f"{'; the clone is shallow' if shallow else ''})",
                    hint="fetch more history (git fetch --unshallow)"
                    if shallow
                    else "deploy from a repository with at least two commits, or record a first deploy",
                )
            if req.rev is not None:
                wanted = att.repo.resolve(req.rev)
                if wanted is None:
                    raise GitStateError(f"{req.repo} has no revision {req.rev!r}", hint="fetch it or fix --rev")
                to_rev = wanted
            else:
                to_rev = head
            # Checked against both revisions a deploy may switch to: an untracked file in the way is refused
            # up front (a dry run too), not half-way through a rollback.
            att.repo.check_clean(to_rev, rollback.rev if rollback is not None else None)
            att.git_notes_shown = git_findings(att.repo, detail)
            tree_reason = tree_needs_checkout(att.repo)
            if tree_reason:
                detail.append(f"the tree needs a checkout: {tree_reason}")
            detail.append(f"HEAD {head[:12]}")
            if rollback is not None:
                detail.append(f"rollback target {rollback.rev[:12]} (from {rollback.source})")
                att.record.rollback_source = rollback.source
            else:
                # Nothing ran before: a failed first deploy is undone by removing the unit.
                detail.append("first deploy: no earlier revision to roll back to")
        from unitctl.preimport import service_view

        view = service_view(candidate.decode("utf-8", "replace"), unit=req.unit, unit_dir=req.unit_dir)
        att.env = dict(view.env)
        facts = Facts(
            unit=req.unit,
            unit_path=target.path,
            installed=snapshot,
            loaded=installed,
            target=target,
            state=state,
            candidate=candidate,
            preload=view.preload,
            reloadable=view.reloadable,
            head=head,
            to_rev=to_rev,
            deployed_rev=deployed_rev,
            rollback=rollback,
            previous_ready_seconds=_ready_seconds(last),
            tree_reason=tree_reason,
            socket=socket,
            socket_candidate=socket_candidate,
            socket_active=socket_active,
            **_running(records, state),
        )
        plan = plan_from(facts, req.strategy)
        if not plan.changes and att.probe is not None:
            # "Nothing to do" only when the running release really serves: ask it once.
            answer = att.probe()
            facts = replace(facts, running_ready=answer.ok)
            plan = plan_from(facts, req.strategy)
            detail.append(f"running release: {answer.describe()}")
        att.facts, att.plan, att.was_active = facts, plan, state.is_active
        att.rollback_timeout = rollback_ready_timeout(req.ready_timeout, facts.previous_ready_seconds)
        att.record.from_rev = rollback.rev if rollback else deployed_rev
        att.record.to_rev = to_rev
        att.record.unit_sha256 = snapshot.sha256
        att.record.candidate_sha256 = fsutil.sha256(candidate)
        for kept in (snapshot, socket):
            if kept is not None and kept.data is not None:
                att.kept[fsutil.sha256(kept.data)] = kept.data
        if state.need_daemon_reload:
            detail.append("NeedDaemonReload=yes: systemd runs an older copy of the unit")
        if facts.running_unrecorded:
            detail.append(f"the running process (InvocationID {state.invocation_id[:12]}) was not started by a deploy")
        detail.append(target.describe())
        if socket is not None:
            listening = "listening" if socket_active else "not listening"
            detail.append(f"socket activation: {socket.path} ({'new' if socket.data is None else listening})")
        detail.append(f"{state.active_state}/{state.sub_state} (backend {backend.name})")
    att.journal.note(
        from_rev=att.record.from_rev, to_rev=to_rev, rollback_source=att.record.rollback_source,
        unit_sha256=snapshot.sha256, candidate_sha256=att.record.candidate_sha256, was_active=state.is_active,
        rollback_timeout=att.rollback_timeout, build_cmd=req.build_cmd, hook_timeout=req.hook_timeout,
    )  # fmt: skip


def socket_path(unit_path: Path) -> Path:
    """Return where the ``.socket`` of a socket-activated unit lives: next to the unit file, NAME.socket."""
    return unit_path.with_name(unit_path.name.rsplit(".", 1)[0] + ".socket")


def _socket_facts(att: Attempt, target: unitpath.WriteTarget) -> tuple[fsutil.FileSnapshot | None, bytes | None, bool]:
    """Return the ``.socket`` file next to the unit as it is now, the one to install, and whether systemd listens.

    A socket systemd already loads from elsewhere (a vendor file) with the same bytes is left alone: copying it
    next to the unit would change nothing but restart it.
    """
    wanted = att.req.socket_bytes
    if wanted is None:
        return None, None, False
    path = socket_path(target.path)
    snap = fsutil.snapshot(path)
    state = att.edges.backend.state(path.name)
    loaded = Path(state.fragment_path) if state.fragment_path else None
    if snap.data is None and loaded is not None and loaded != path and fsutil.snapshot(loaded).data == wanted:
        return None, None, state.is_active
    return snap, wanted, state.is_active


def tree_needs_checkout(repo: GitRepo) -> str:
    """Return why the working tree is not simply at its HEAD (an interrupted checkout, a stale lock, changed
    tracked files other than bytecode), or "": a tree like that is never "nothing to do"."""
    reasons = []
    interrupted = repo.interrupted_target()
    if interrupted is not None:
        reasons.append(f"unitctl's checkout of {interrupted[:12]} was interrupted")
    reasons.extend(f"{lock.name} left by a killed git" for lock in repo.stale_locks())
    dirty = [p for p in repo.dirty_files() if not regenerable(p)]
    if dirty:
        reasons.append(f"changed tracked files ({', '.join(dirty[:5])}{' ...' if len(dirty) > 5 else ''})")
    return "; ".join(reasons)


def _remove_stale_checks(att: Attempt) -> list[str]:
    """Stop and forget import-check units an earlier run of this unit left behind (a kill -9 mid-check)."""
    try:
        return att.edges.backend.remove_transient_units(transient_prefix(att.req.unit))
    except SystemdError as exc:
        att.reporter.line(f"warning: could not remove leftover check units: {exc}")
        return []


def transient_prefix(unit: str) -> str:
    """Return the name prefix of the import-check units of ``unit`` (removed by name on the next run)."""
    stem = unit.rsplit(".", 1)[0].replace("@", "-").replace("\\", "-")
    return f"{TRANSIENT_PREFIX}{stem}-"


def _running(records: list[Record], state: UnitState) -> dict[str, Any]:
    """Return what the history says about the process running now: its revision, or that no deploy started it."""
    if not state.invocation_id:
        return {}
    for rec in reversed(records):
        if rec.invocation_id == state.invocation_id:
            return {"running_rev": rec.running_rev}
    good = history.last_good(records)
    # Only when deploys record their process: older histories (and first deploys) know nothing either way.
    return {"running_unrecorded": bool(good is not None and good.invocation_id)}


def _ready_seconds(record: Record | None) -> float | None:
    if record is None:
        return None
    seconds = [p.seconds for p in record.phases if p.name == "guard" and p.ok]
    return seconds[-1] if seconds else None


def _candidate(req: ApplyRequest, target: unitpath.WriteTarget, installed: bytes | None, detail: Detail) -> bytes:
    if req.unit_bytes is not None:
        return req.unit_bytes
    if req.unit_file is not None:
        return fsutil.read_unit_bytes(req.unit_file, hint="check --unit-file")
    if installed is None:
        what = "rewrite" if req.rewrite is not None else "keep"
        raise InputError(
            f"{req.unit} is not installed in {req.unit_dir} and no --unit-file was given: there is no unit to {what}",
            hint="pass --unit-file FILE or --render for a first deploy",
        )
    if req.rewrite is None:
        return installed
    from unitctl.desired import check_rewrite_target, rewrite_text
    from unitctl.preimport import _dropins

    # The same rewrite 'unitctl diff NAME --workers/--no-preload' shows; a drop-in that replaced ExecStart=
    # would make a rewrite of the unit file a no-op that still restarts the service.
    path = target.loaded_from or str(target.path)
    installed_text = installed.decode("utf-8", "surrogateescape")
    check_rewrite_target(installed_text, path=path, dropins=_dropins(req.unit, req.unit_dir), unit=req.unit)
    text, warnings = rewrite_text(installed_text, req.rewrite, path=path)
    detail.extend(f"warning: {w}" for w in warnings)
    return text.encode("utf-8", "surrogateescape")
