"""Where to write a unit so that systemd reads it, and how to undo that write.

systemd reports where it loaded a unit from (``FragmentPath``, ``DropInPaths``, ``UnitFileState``); unitctl
writes only in the unit directory (``/etc/systemd/system``) and decides from that report:

- a unit loaded from the unit directory is replaced in place (``unit-file``);
- a vendor unit (``/usr/lib``, ``/usr/local/lib``, ``/lib``) gets a complete copy in the unit directory, which
  systemd prefers; every drop-in still applies, and the undo removes the copy (``vendor-copy``);
- an instance ``app@1.service`` read from ``app@.service`` changes its template only when allowed
  (``template``): that changes every instance;
- a symlinked unit file keeps its link: unitctl writes the file at its end when that file and every link on the
  way lie in the administrator's systemd configuration (``/etc/systemd``), and refuses a link anywhere else
  (``/usr/lib``, ``/opt``, the app's checkout);
- a masked, runtime, generated or transient unit, an alias, or a unit whose files changed since systemd loaded
  them is refused: nothing is written.

``decide`` is pure (it asks ``look`` what a path is); ``resolve`` reads the file system, under ``root``.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unitctl import fsutil
from unitctl.errors import UnitPathError
from unitctl.systemd.base import UnitState
from unitctl.unitname import validate_unit_name

TargetKind = Literal["unit-file", "vendor-copy", "template"]
DEFAULT_UNIT_DIR = "/etc/systemd/system"
# Package-managed unit directories: systemd reads the unit directory before all of them.
VENDOR_DIRS = ("/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
TEMPLATE_FLAG = "--edit-template"
_MAX_LINKS = 40  # as the kernel's path resolution


@dataclass(frozen=True)
class PathInfo:
    """What a path is on disk; for a symlink, where it ends and every link on the way."""

    path: str
    kind: Literal["absent", "file", "link", "other"]
    real: str = ""  # a link's end with every symlink resolved
    real_kind: Literal["absent", "file", "other", "loop"] = "absent"
    links: tuple[str, ...] = ()  # every symlink met while resolving (their parents resolved)


Look = Callable[[str], PathInfo]


@dataclass(frozen=True)
class WriteTarget:
    """The file unitctl writes for a unit, and what writing it means."""

    unit: str
    path: Path  # the file to write (for a symlinked unit, the file the link ends at)
    kind: TargetKind
    exists: bool  # the file exists now: the undo restores its bytes; otherwise the undo removes it
    first_deploy: bool  # systemd does not know the unit at all: nothing ran before this deploy
    loaded_from: str  # the FragmentPath systemd runs now ('' for a new unit): the bytes to compare against
    via_link: str = ""  # the symlink systemd reads, kept as it is
    dropin_paths: tuple[str, ...] = ()  # drop-ins that keep applying on top of whatever is written

    @property
    def undo(self) -> Literal["restore", "remove"]:
        return "restore" if self.exists else "remove"

    def describe(self) -> str:
        """Return one line saying what will be written and how it is undone."""
        what = {
            "unit-file": f"write {self.path}",
            "vendor-copy": f"write {self.path}, a copy that shadows {self.loaded_from}",
            "template": f"write the template {self.path} (every instance changes)",
        }[self.kind]
        if self.via_link:
            what += f" through the link {self.via_link}"
        if self.dropin_paths:
            what += f"; drop-ins still apply: {', '.join(self.dropin_paths)}"
        undo = "restore its bytes" if self.exists else "remove it"
        return f"{what}; undo: {undo}{' (first deploy)' if self.first_deploy else ''}"


@dataclass(frozen=True)
class UndoPlan:
    """How a rollback undoes the write: in this order, then ``daemon-reload`` between undo and ``then``."""

    stop_first: bool  # stop the service before the undo: only when nothing ran before the deploy
    undo: Literal["restore", "remove"]
    then: Literal["restart", "stop", "nothing"]  # restart what ran before; stop what was stopped


def first_deploy(state: UnitState) -> bool:
    """Return True only when systemd knows nothing of the unit: not-found, no unit file, no process."""
    return (
        state.load_state == "not-found"
        and not state.fragment_path
        and state.active_state in ("inactive", "failed")
        and state.main_pid == 0
    )


def was_running(state: UnitState) -> bool:
    """Return True when the service had (or was starting) a process before the deploy."""
    return state.active_state in ("active", "reloading", "activating") or state.main_pid != 0


def undo_plan(target: WriteTarget, before: UnitState) -> UndoPlan:
    """Return the rollback of ``target``: a service that ran before is restarted, never stopped or removed."""
    if target.first_deploy and not was_running(before):
        return UndoPlan(stop_first=True, undo=target.undo, then="nothing")
    return UndoPlan(stop_first=False, undo=target.undo, then="restart" if was_running(before) else "stop")


def _refuse_state(name: str, state: UnitState) -> None:
    """Refuse a template name, a masked unit, and unit files changed on disk since systemd loaded them."""
    stem, suffix = name.rsplit(".", 1)
    prefix, at, instance = stem.partition("@")
    if at and not instance:
        raise UnitPathError(
            f"{name} is a template, not a unit that runs", hint=f"name an instance: {prefix}@1.{suffix}"
        )
    if state.load_state == "masked" or state.unit_file_state.startswith("masked"):
        raise UnitPathError(
            f"{name} is masked ({state.fragment_path or '/dev/null'})",
            hint=f"unmask it ('systemctl unmask {name}') if it should run, then deploy again",
        )
    if state.need_daemon_reload:
        raise UnitPathError(
            f"{name}: its unit files changed on disk since systemd loaded them (NeedDaemonReload=yes)",
            hint="check that change, run 'systemctl daemon-reload', then deploy again",
        )


def _fragment_kind(name: str, fragment: str, unit_dir: str, *, allow_template: bool) -> TargetKind:
    """Tell whether systemd reads ``name`` from its own file or its template's; refuse an alias."""
    fname = posixpath.basename(posixpath.normpath(fragment))
    if fname == name:
        return "unit-file"
    stem, suffix = name.rsplit(".", 1)
    prefix, at, _ = stem.partition("@")
    if not (at and fname == f"{prefix}@.{suffix}"):
        raise UnitPathError(f"{name} is an alias of {fname} (systemd reads {fragment})", hint=f"deploy {fname} instead")
    if not allow_template:
        raise UnitPathError(
            f"{name} runs from the template {fragment}: writing it changes every instance of {prefix}@",
            hint=f"pass {TEMPLATE_FLAG} to change the template, or give this instance its own unit file "
            f"({unit_dir}/{name}) and run 'systemctl daemon-reload'",
        )
    return "template"


def decide(
    unit: str,
    state: UnitState,
    *,
    unit_dir: str = DEFAULT_UNIT_DIR,
    allow_template: bool = False,
    look: Look,
    link_roots: Sequence[str] | None = None,
) -> WriteTarget:
    """Return where to write ``unit`` given what systemd reports (``state``); raise UnitPathError to refuse.

    ``link_roots`` are where a symlinked unit may lead (resolved; default: the unit directory's parent).
    """
    name = validate_unit_name(unit)
    if state.name != name:
        raise ValueError(f"state of {state.name} given for {name}")
    unit_dir = posixpath.normpath(unit_dir)
    roots = [posixpath.normpath(r) for r in (link_roots or [posixpath.dirname(unit_dir)])]
    _refuse_state(name, state)
    fragment = state.fragment_path
    if not fragment:
        return _new_unit(name, state, unit_dir, look)
    fdir, fname = posixpath.split(posixpath.normpath(fragment))
    kind = _fragment_kind(name, fragment, unit_dir, allow_template=allow_template)
    own = posixpath.join(unit_dir, fname)
    info = look(own)

    def target(path: str, kind: TargetKind, *, exists: bool, via_link: str = "") -> WriteTarget:
        return WriteTarget(
            unit=name,
            path=Path(path),
            kind=kind,
            exists=exists,
            first_deploy=False,
            loaded_from=fragment,
            via_link=via_link,
            dropin_paths=state.dropin_paths,
        )

    if info.kind == "link":
        real = _through_link(info, roots)
        if fragment not in (own, info.real):
            raise UnitPathError(
                f"{own} is a symlink to {info.real}, but systemd reads {name} from {fragment}",
                hint="run 'systemctl daemon-reload' and check which file is meant, then deploy again",
            )
        return target(real, kind, exists=True, via_link=own)
    if info.kind == "other":
        raise UnitPathError(f"{own} is not a regular file", hint="remove it or move it away, then deploy again")
    if info.kind == "file":
        if fdir != unit_dir:
            raise UnitPathError(
                f"systemd reads {name} from {fragment} although {own} exists",
                hint="run 'systemctl daemon-reload' (or remove the file systemd does not read), then deploy again",
            )
        return target(own, kind, exists=True)
    if fdir == unit_dir:
        raise UnitPathError(
            f"systemd reads {name} from {fragment}, which is gone",
            hint="run 'systemctl daemon-reload' (or put the unit file back), then deploy again",
        )
    if fdir not in VENDOR_DIRS:
        raise UnitPathError(
            f"systemd reads {name} from {fragment} (UnitFileState={state.unit_file_state or 'unknown'}): "
            "a runtime, generated or transient unit, which unitctl does not deploy",
            hint=f"install it as {own} and run 'systemctl daemon-reload', then deploy again",
        )
    return target(own, "template" if kind == "template" else "vendor-copy", exists=False)


def _new_unit(name: str, state: UnitState, unit_dir: str, look: Look) -> WriteTarget:
    """Return the target for a unit systemd reads from no file (a first deploy), or refuse."""
    if state.load_state != "not-found":
        raise UnitPathError(
            f"systemd reads {name} from no unit file (LoadState={state.load_state or 'unknown'})",
            hint=f"install it as {unit_dir}/{name} and run 'systemctl daemon-reload', then deploy again",
        )
    if not first_deploy(state):
        raise UnitPathError(
            f"{name} is {state.active_state}/{state.sub_state} but has no unit file (LoadState=not-found)",
            hint="put its unit file back (or stop it), run 'systemctl daemon-reload', then deploy again",
        )
    own = posixpath.join(unit_dir, name)
    info = look(own)
    if info.kind == "link":
        why = f" ({_link_end(info)})" if info.real_kind != "file" else ""
        raise UnitPathError(
            f"{own} is a symlink to {info.real or 'nowhere'} that systemd does not load{why}",
            hint="replace it with the unit file itself, then deploy again",
        )
    if info.kind == "other":
        raise UnitPathError(f"{own} is not a regular file", hint="remove it or move it away, then deploy again")
    # A file systemd does not load (e.g. written after the last daemon-reload) is restored, not removed.
    return WriteTarget(
        unit=name,
        path=Path(own),
        kind="unit-file",
        exists=info.kind == "file",
        first_deploy=True,
        loaded_from="",
        dropin_paths=state.dropin_paths,
    )


def _link_end(info: PathInfo) -> str:
    return {"absent": "it leads nowhere", "loop": "a symlink loop"}.get(info.real_kind, "not a regular file")


def _through_link(info: PathInfo, roots: Sequence[str]) -> str:
    """Return the file at the end of the link ``info``, or refuse a link unitctl must not write through."""
    if info.real_kind != "file":
        raise UnitPathError(
            f"{info.path} is a symlink to {info.real or 'nowhere'} ({_link_end(info)})",
            hint="replace it with the unit file itself, then deploy again",
        )
    outside = [p for p in (*info.links, info.real) if not any(_under(p, r) for r in roots)]
    if outside:
        raise UnitPathError(
            f"{info.path} is a symlink to {info.real}, outside {' and '.join(roots)}: "
            f"unitctl does not write through it (via {outside[0]})",
            hint=f"replace the link with a copy ('cp --remove-destination {info.real} {info.path}'), "
            "run 'systemctl daemon-reload', then deploy again",
        )
    return info.real


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# -- the file system edge ------------------------------------------------------------------------


def follow(path: str, *, root: Path = Path("/")) -> tuple[str, Literal["absent", "file", "other", "loop"], list[str]]:
    """Resolve every symlink in ``path`` as seen from ``root``; return (end, what it is, links met)."""
    links: list[str] = []
    done = "/"
    pending = list(reversed([c for c in path.split("/") if c]))
    while pending:
        comp = pending.pop()
        if comp in (".", ""):
            continue
        if comp == "..":
            done = posixpath.dirname(done)
            continue
        candidate = posixpath.join(done, comp)
        try:
            st = os.lstat(root / candidate.lstrip("/"))
        except (FileNotFoundError, NotADirectoryError):
            return posixpath.normpath(posixpath.join(candidate, *reversed(pending))), "absent", links
        if not stat.S_ISLNK(st.st_mode):
            done = candidate
            continue
        links.append(candidate)
        if len(links) > _MAX_LINKS:
            return candidate, "loop", links
        target = os.readlink(root / candidate.lstrip("/"))
        if target.startswith("/"):
            done = "/"
        pending.extend(reversed([c for c in target.split("/") if c]))
    try:
        st = os.stat(root / done.lstrip("/"))
    except OSError:
        return done, "absent", links
    return done, "file" if stat.S_ISREG(st.st_mode) else "other", links


def look_under(root: Path = Path("/")) -> Look:
    """Return a ``look`` that reads the file system as seen from ``root``."""

    def look(path: str) -> PathInfo:
        try:
            st = os.lstat(root / path.lstrip("/"))
        except (FileNotFoundError, NotADirectoryError):
            return PathInfo(path, "absent")
        if stat.S_ISREG(st.st_mode):
            return PathInfo(path, "file")
        if not stat.S_ISLNK(st.st_mode):
            return PathInfo(path, "other")
        real, real_kind, links = follow(path, root=root)
        return PathInfo(path, "link", real=real, real_kind=real_kind, links=tuple(links))

    return look


def loaded_bytes(target: WriteTarget, *, root: Path = Path("/")) -> bytes | None:
    """Return the unit file systemd runs now (None for a new unit): what a candidate is compared with."""
    # A vendor copy does not exist yet: the vendor file it will shadow is what runs.
    source = str(target.path) if target.exists else target.loaded_from
    if not source:
        return None
    return fsutil.read_unit_bytes(root / source.lstrip("/"), hint="check its permissions")


def resolve(
    unit: str,
    state: UnitState,
    *,
    unit_dir: str | os.PathLike[str] = DEFAULT_UNIT_DIR,
    allow_template: bool = False,
    root: Path = Path("/"),
) -> WriteTarget:
    """Return where to write ``unit`` so that systemd reads it (``state`` from the backend); refuse what cannot be."""
    unit_dir = posixpath.normpath(os.fspath(unit_dir))
    # The link roots themselves may be links (/etc/systemd -> elsewhere): compare resolved paths.
    link_root, _, _ = follow(posixpath.dirname(unit_dir), root=root)
    return decide(
        unit, state, unit_dir=unit_dir, allow_template=allow_template, look=look_under(root), link_roots=[link_root]
    )
