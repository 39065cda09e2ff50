"""Steps with their own undo: each step that changes the world registers how to put it back before it acts.

An undo names the resource it restores (the checkout, the unit file, its ``.socket`` file, systemd's loaded
configuration, the running service) and the value to restore, as plain data: the same entries are written to
the intent journal, so a later unitctl can rebuild the log of a deploy that died and finish its rollback.

The rollback replays the log in registration order: each undo re-applies its step with the previous value, and
the steps depend on each other going back as going forward (files first, then daemon-reload, then the restart).
A resource registered twice keeps its first place and takes the later target (a rejected release moves the
tree's target from "where it was" to "the last good revision").

The tree is registered first, so it is put back first. With socket activation that bounds how long a crashed
release runs: its ``.socket`` starts the service again on the next queued connection, and from the checkout on
that start runs the previous code; the socket itself is never stopped by a rollback that did not change it, so
queued connections are answered by the previous release. A queued request waits at most the guard's next tick +
the checkout + the stop of the instance the socket started (the unit's ``TimeoutStopSec=``) + the previous
release's start: at most 4.54 s (median 2.18 s) measured with an app importing in 1.5 s
(``bench/deploy_under_load.py --scenario crash-after-switch --repeat 3 --tool unitctl``; docs/canary-and-guard.md,
"A late crash with socket activation").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

# "worktree" and "canary" are the canary's tree and unit (deploy/canary.py): removed on every way out, never restored.
Resource = Literal["tree", "unit", "socket", "daemon", "service", "worktree", "canary"]
RESOURCES: tuple[Resource, ...] = ("tree", "unit", "socket", "daemon", "service", "worktree", "canary")


@dataclass(frozen=True)
class Undo:
    """How to put one resource back."""

    resource: Resource
    rev: str | None = None  # tree: the revision to check out
    repo: str | None = None  # tree, worktree: the checkout
    build_cmd: tuple[str, ...] | None = None  # tree: the build hooks to run again after the checkout
    path: str | None = None  # unit, socket: the file; worktree: the canary tree
    name: str | None = None  # canary: the transient unit
    sha256: str | None = None  # unit, socket: previous bytes (kept in the history's unit store); None: was absent
    # unit: nothing ran before (stop the service, then remove the file); None: an older journal, where an
    # absent file meant exactly that. A vendor copy is absent too, but its service ran: remove it, restart.
    first_deploy: bool | None = None
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    # service: running before the deploy (restart it) or not (leave it stopped); socket: listening before the
    # deploy (restart it with the old file) or not (stop it)
    was_active: bool = True
    # service: what a rollback needs to choose a HUP over a restart (model.choose_rollback_action). The defaults,
    # an older journal's, mean a restart.
    strategy: str | None = None
    preload: bool = True
    reloadable: bool = False  # the unit has an ExecReload=
    invocation_id: str | None = None  # the service's InvocationID right after the switch

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Undo:
        if data.get("resource") not in RESOURCES:
            raise ValueError(f"unknown undo resource {data.get('resource')!r}")
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        build = values.get("build_cmd")
        if build is not None:
            # JSON has lists; an older journal has one command as a string.
            values["build_cmd"] = (build,) if isinstance(build, str) else tuple(str(c) for c in build)
        return cls(**values)


class UndoLog:
    """The undos registered so far, one per resource, in the order they were first registered."""

    def __init__(self, undos: Iterable[Undo] = ()) -> None:
        self._undos: dict[Resource, Undo] = {}
        for undo in undos:
            self.register(undo)

    def register(self, undo: Undo) -> None:
        """Record how to put ``undo.resource`` back (a later registration updates the target, not the order)."""
        self._undos[undo.resource] = undo

    def drop(self, resource: Resource) -> None:
        """Forget a resource's undo: its step failed without changing anything."""
        self._undos.pop(resource, None)

    def get(self, resource: Resource) -> Undo | None:
        return self._undos.get(resource)

    def entries(self) -> list[Undo]:
        return list(self._undos.values())

    @property
    def touched_systemd(self) -> bool:
        """Whether any registered step changed what systemd runs or loads (a refusal can no longer say "nothing")."""
        return any(r in self._undos for r in ("unit", "socket", "daemon", "service"))

    def __bool__(self) -> bool:
        return bool(self._undos)
