"""Where unitctl writes a unit so that systemd reads it: every decision, from what systemd reports and the disk."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from unitctl.errors import ExitCode, InputError, UnitPathError
from unitctl.systemd.base import UnitState
from unitctl.unitpath import (
    PathInfo,
    UndoPlan,
    WriteTarget,
    decide,
    first_deploy,
    follow,
    loaded_bytes,
    look_under,
    resolve,
    undo_plan,
)

ETC = "/etc/systemd/system"
RUNNING: dict[str, Any] = {"load_state": "loaded", "active_state": "active", "sub_state": "running", "main_pid": 42}
STOPPED: dict[str, Any] = {"load_state": "loaded", "active_state": "inactive", "sub_state": "dead", "main_pid": 0}
NOT_FOUND: dict[str, Any] = {"load_state": "not-found", "active_state": "inactive", "sub_state": "dead", "main_pid": 0}


def st(name: str, *, fragment: str = "", dropins: tuple[str, ...] = (), ufs: str = "", **kw: Any) -> UnitState:
    fields = {**RUNNING, **kw}
    return UnitState(name=name, fragment_path=fragment, dropin_paths=dropins, unit_file_state=ufs, **fields)


def disk(files: dict[str, PathInfo | str]) -> Callable[[str], PathInfo]:
    """Return a ``look`` over a table: a path maps to 'file', 'other' or a PathInfo; anything else is absent."""

    def look(path: str) -> PathInfo:
        entry = files.get(path)
        if isinstance(entry, PathInfo):
            return entry
        return PathInfo(path, entry) if entry in ("file", "other") else PathInfo(path, "absent")  # type: ignore[arg-type]

    return look


def link(path: str, real: str, *, real_kind: str = "file", via: tuple[str, ...] = ()) -> PathInfo:
    return PathInfo(path, "link", real=real, real_kind=real_kind, links=(path, *via))  # type: ignore[arg-type]


VENDOR_DROPINS = ("/usr/lib/systemd/system/app.service.d/10-vendor.conf", f"{ETC}/app.service.d/override.conf")

# (case, unit, state, disk, allow_template) -> (path, kind, exists, first_deploy, via_link)
WRITES = [
    (
        "unit in /etc: replaced in place",
        "app.service",
        st("app.service", fragment=f"{ETC}/app.service", ufs="enabled"),
        {f"{ETC}/app.service": "file"},
        False,
        (f"{ETC}/app.service", "unit-file", True, False, ""),
    ),
    (
        "first deploy: systemd knows nothing",
        "app.service",
        st("app.service", **NOT_FOUND),
        {},
        False,
        (f"{ETC}/app.service", "unit-file", False, True, ""),
    ),
    (
        "a first deploy that failed before (failed, no file) is still a first deploy",
        "app.service",
        st("app.service", load_state="not-found", active_state="failed", sub_state="failed", main_pid=0),
        {},
        False,
        (f"{ETC}/app.service", "unit-file", False, True, ""),
    ),
    (
        "file on disk that systemd does not load yet: restored, not removed",
        "app.service",
        st("app.service", **NOT_FOUND),
        {f"{ETC}/app.service": "file"},
        False,
        (f"{ETC}/app.service", "unit-file", True, True, ""),
    ),
    (
        "vendor unit in /usr/lib with an /etc drop-in: an /etc copy shadows it",
        "app.service",
        st("app.service", fragment="/usr/lib/systemd/system/app.service", dropins=VENDOR_DROPINS, ufs="enabled"),
        {},
        False,
        (f"{ETC}/app.service", "vendor-copy", False, False, ""),
    ),
    (
        "vendor unit as Debian reports it (/lib), stopped",
        "app.service",
        st("app.service", fragment="/lib/systemd/system/app.service", **STOPPED),
        {},
        False,
        (f"{ETC}/app.service", "vendor-copy", False, False, ""),
    ),
    (
        "vendor unit in /usr/local/lib",
        "app.service",
        st("app.service", fragment="/usr/local/lib/systemd/system/app.service"),
        {},
        False,
        (f"{ETC}/app.service", "vendor-copy", False, False, ""),
    ),
    (
        "template instance, allowed: the template in /etc",
        "app@1.service",
        st("app@1.service", fragment=f"{ETC}/app@.service"),
        {f"{ETC}/app@.service": "file"},
        True,
        (f"{ETC}/app@.service", "template", True, False, ""),
    ),
    (
        "template instance of a vendor template, allowed: an /etc copy of the template",
        "app@1.service",
        st("app@1.service", fragment="/usr/lib/systemd/system/app@.service"),
        {},
        True,
        (f"{ETC}/app@.service", "template", False, False, ""),
    ),
    (
        "an instance with its own unit file is an ordinary unit (no flag needed)",
        "app@1.service",
        st("app@1.service", fragment=f"{ETC}/app@1.service"),
        {f"{ETC}/app@1.service": "file"},
        False,
        (f"{ETC}/app@1.service", "unit-file", True, False, ""),
    ),
    (
        "a new instance with no template anywhere: its own unit file",
        "app@1.service",
        st("app@1.service", **NOT_FOUND),
        {},
        False,
        (f"{ETC}/app@1.service", "unit-file", False, True, ""),
    ),
    (
        "linked unit whose file is under /etc/systemd: the link is kept, its target written",
        "app.service",
        st("app.service", fragment=f"{ETC}/app.service", ufs="linked"),
        {f"{ETC}/app.service": link(f"{ETC}/app.service", "/etc/systemd/units/app.service")},
        False,
        ("/etc/systemd/units/app.service", "unit-file", True, False, f"{ETC}/app.service"),
    ),
    (
        "a chain of links, all under /etc/systemd",
        "app.service",
        st("app.service", fragment=f"{ETC}/app.service", ufs="alias"),
        {
            f"{ETC}/app.service": link(
                f"{ETC}/app.service", "/etc/systemd/units/app-real.service", via=("/etc/systemd/units/app.service",)
            )
        },
        False,
        ("/etc/systemd/units/app-real.service", "unit-file", True, False, f"{ETC}/app.service"),
    ),
]


@pytest.mark.parametrize(("case", "unit", "state", "files", "allow", "expected"), WRITES, ids=[w[0] for w in WRITES])
def test_where_the_unit_is_written(
    case: str, unit: str, state: UnitState, files: dict[str, PathInfo | str], allow: bool, expected: tuple[Any, ...]
) -> None:
    target = decide(unit, state, allow_template=allow, look=disk(files))
    path, kind, exists, first, via = expected
    assert (str(target.path), target.kind, target.exists, target.first_deploy, target.via_link) == expected
    assert target.undo == ("restore" if exists else "remove")
    assert target.loaded_from == state.fragment_path and target.dropin_paths == state.dropin_paths
    assert target.unit == unit


REFUSALS = [
    (
        "template instance without the flag names the flag",
        "app@1.service",
        st("app@1.service", fragment=f"{ETC}/app@.service"),
        {f"{ETC}/app@.service": "file"},
        r"app@1\.service runs from the template /etc/systemd/system/app@\.service: writing it changes every "
        r"instance of app@; pass --edit-template",
    ),
    (
        "vendor template instance without the flag",
        "app@2.service",
        st("app@2.service", fragment="/lib/systemd/system/app@.service"),
        {},
        r"template /lib/systemd/system/app@\.service.*--edit-template",
    ),
    (
        "a template name is not a unit that runs",
        "app@.service",
        st("app@.service", **NOT_FOUND),
        {},
        r"app@\.service is a template, not a unit that runs; name an instance: app@1\.service",
    ),
    (
        "a link into the app's checkout",
        "app.service",
        st("app.service", fragment=f"{ETC}/app.service", ufs="linked"),
        {f"{ETC}/app.service": link(f"{ETC}/app.service", "/srv/app/deploy/app.service")},
        r"/etc/systemd/system/app\.service is a symlink to /srv/app/deploy/app\.service, outside /etc/systemd: "
        r"unitctl does not write through it.*cp --remove-destination",
    ),
    (
        "a link into /usr/lib (systemd reads the vendor file through it)",
        "app.service",
        st("app.service", fragment="/lib/systemd/system/app.service", ufs="bad"),
        {f"{ETC}/app.service": link(f"{ETC}/app.service", "/usr/lib/systemd/system/app.service")},
        r"symlink to /usr/lib/systemd/system/app\.service, outside /etc/systemd",
    ),
    (
        "a chain that passes through the checkout, although it ends in /etc",
        "app.service",
        st("app.service", fragment=f"{ETC}/app.service", ufs="linked"),
        {
            f"{ETC}/app.service": link(
                f"{ETC}/app.service", "/etc/systemd/units/app.service", via=("/srv/app/app.service",)
            )
        },
        r"outside /etc/systemd: unitctl does not write through it \(via /srv/app/app\.service\)",
    ),
    (
        "a dangling link",
        "app.service",
        st("app.service", **NOT_FOUND),
        {f"{ETC}/app.service": link(f"{ETC}/app.service", "/srv/gone/app.service", real_kind="absent")},
        r"symlink to /srv/gone/app\.service that systemd does not load \(it leads nowhere\)",
    ),
    (
        "a link into a subdirectory of the unit directory, which systemd ignores",
        "app.service",
        st("app.service", **NOT_FOUND),
        {f"{ETC}/app.service": link(f"{ETC}/app.service", f"{ETC}/real/app.service")},
        r"symlink to /etc/systemd/system/real/app\.service that systemd does not load; replace it",
    ),
    (
        "a link loop",
        "app.service",
        st("app.service", fragment=f"{ETC}/app.service"),
        {f"{ETC}/app.service": link(f"{ETC}/app.service", f"{ETC}/app.service", real_kind="loop")},
        r"a symlink loop",
    ),
    (
        "masked",
        "app.service",
        st("app.service", fragment=f"{ETC}/app.service", ufs="masked", **{**STOPPED, "load_state": "masked"}),
        {},
        r"app\.service is masked \(/etc/systemd/system/app\.service\); unmask it \('systemctl unmask app\.service'\)",
    ),
    (
        "files changed since systemd loaded them",
        "app.service",
        st("app.service", fragment=f"{ETC}/app.service", need_daemon_reload=True),
        {f"{ETC}/app.service": "file"},
        r"changed on disk since systemd loaded them \(NeedDaemonReload=yes\); check that change, run "
        r"'systemctl daemon-reload'",
    ),
    (
        "an alias",
        "web.service",
        st("web.service", fragment=f"{ETC}/app.service", ufs="alias"),
        {f"{ETC}/app.service": "file"},
        r"web\.service is an alias of app\.service \(systemd reads /etc/systemd/system/app\.service\); deploy "
        r"app\.service instead",
    ),
    (
        "a runtime unit in /run",
        "app.service",
        st("app.service", fragment="/run/systemd/system/app.service", ufs="runtime"),
        {},
        r"systemd reads app\.service from /run/systemd/system/app\.service \(UnitFileState=runtime\): a runtime, "
        r"generated or transient unit",
    ),
    (
        "a transient unit",
        "app.service",
        st("app.service", fragment="/run/systemd/transient/app.service", ufs="transient"),
        {},
        r"transient unit",
    ),
    (
        "a generated unit",
        "app.service",
        st("app.service", fragment="/run/systemd/generator/app.service", ufs="generated"),
        {},
        r"generated",
    ),
    (
        "running although its unit file is gone: no first deploy, and nothing to restore",
        "app.service",
        st("app.service", load_state="not-found"),
        {},
        r"app\.service is active/running but has no unit file \(LoadState=not-found\)",
    ),
    (
        "loaded from no file",
        "app.service",
        st("app.service", load_state="loaded"),
        {},
        r"systemd reads app\.service from no unit file \(LoadState=loaded\)",
    ),
    (
        "systemd reads the vendor file although an /etc file exists",
        "app.service",
        st("app.service", fragment="/usr/lib/systemd/system/app.service"),
        {f"{ETC}/app.service": "file"},
        r"systemd reads app\.service from /usr/lib/systemd/system/app\.service although "
        r"/etc/systemd/system/app\.service exists",
    ),
    (
        "the /etc file systemd reads is gone",
        "app.service",
        st("app.service", fragment=f"{ETC}/app.service"),
        {},
        r"systemd reads app\.service from /etc/systemd/system/app\.service, which is gone",
    ),
    (
        "a directory where the unit file should be",
        "app.service",
        st("app.service", **NOT_FOUND),
        {f"{ETC}/app.service": "other"},
        r"/etc/systemd/system/app\.service is not a regular file",
    ),
]


@pytest.mark.parametrize(("case", "unit", "state", "files", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_are_one_clear_line(
    case: str, unit: str, state: UnitState, files: dict[str, PathInfo | str], message: str
) -> None:
    with pytest.raises(UnitPathError, match=message) as info:
        decide(unit, state, look=disk(files))
    assert info.value.exit_code == ExitCode.REFUSED
    assert "\n" not in str(info.value) and info.value.hint


def test_the_template_flag_does_not_lift_the_other_refusals() -> None:
    state = st("app@1.service", fragment=f"{ETC}/app@.service", ufs="linked")
    files = {f"{ETC}/app@.service": link(f"{ETC}/app@.service", "/srv/app/app@.service")}
    with pytest.raises(UnitPathError, match="outside /etc/systemd"):
        decide("app@1.service", state, allow_template=True, look=disk(files))  # type: ignore[arg-type]


def test_unit_names_are_validated_and_must_match_the_state() -> None:
    with pytest.raises(Exception, match="not a valid systemd unit name"):
        decide("../evil.service", st("../evil.service"), look=disk({}))
    with pytest.raises(ValueError, match="state of other.service given for app.service"):
        decide("app", st("other.service"), look=disk({}))
    assert decide("app", st("app.service", **NOT_FOUND), look=disk({})).unit == "app.service"


def test_a_custom_unit_dir_and_link_roots() -> None:
    state = st("app.service", fragment="/srv/units/app.service", ufs="linked")
    files = {"/srv/units/app.service": link("/srv/units/app.service", "/srv/shared/app.service")}
    target = decide("app.service", state, unit_dir="/srv/units/", look=disk(files))  # type: ignore[arg-type]
    assert str(target.path) == "/srv/shared/app.service"  # default root: the unit directory's parent (/srv)
    with pytest.raises(UnitPathError, match="outside /srv/units"):
        decide("app.service", state, unit_dir="/srv/units", look=disk(files), link_roots=["/srv/units"])  # type: ignore[arg-type]


# -- first deploy and the rollback ---------------------------------------------------------------

FIRST = [
    ("not-found, no file, nothing runs", st("a.service", **NOT_FOUND), True),
    ("not-found but failed before", st("a.service", **{**NOT_FOUND, "active_state": "failed"}), True),
    ("vendor unit running", st("a.service", fragment="/usr/lib/systemd/system/a.service"), False),
    ("vendor unit stopped", st("a.service", fragment="/usr/lib/systemd/system/a.service", **STOPPED), False),
    ("template instance running", st("a@1.service", fragment=f"{ETC}/a@.service"), False),
    ("not-found but still running (file removed)", st("a.service", load_state="not-found"), False),
    ("not-found, a main pid", st("a.service", **{**NOT_FOUND, "main_pid": 7}), False),
    ("not-found but a fragment is reported", st("a.service", fragment=f"{ETC}/a.service", **NOT_FOUND), False),
    ("loaded from /etc, stopped", st("a.service", fragment=f"{ETC}/a.service", **STOPPED), False),
    ("bad-setting", st("a.service", fragment=f"{ETC}/a.service", **{**STOPPED, "load_state": "bad-setting"}), False),
]


@pytest.mark.parametrize(("case", "state", "expected"), FIRST, ids=[f[0] for f in FIRST])
def test_first_deploy_only_when_systemd_knows_nothing(case: str, state: UnitState, expected: bool) -> None:
    assert first_deploy(state) is expected


def _target(first: bool, exists: bool) -> WriteTarget:
    return WriteTarget(
        unit="a.service",
        path=Path(f"{ETC}/a.service"),
        kind="unit-file",
        exists=exists,
        first_deploy=first,
        loaded_from="",
    )


UNDO = [
    (
        "first deploy: stop, remove",
        _target(True, False),
        st("a.service", **NOT_FOUND),
        UndoPlan(True, "remove", "nothing"),
    ),
    (
        "vendor copy of a running unit: remove the copy and restart, never stop",
        dataclasses.replace(_target(False, False), kind="vendor-copy"),
        st("a.service", fragment="/usr/lib/systemd/system/a.service"),
        UndoPlan(False, "remove", "restart"),
    ),
    (
        "vendor copy of a stopped unit: left stopped",
        dataclasses.replace(_target(False, False), kind="vendor-copy"),
        st("a.service", fragment="/usr/lib/systemd/system/a.service", **STOPPED),
        UndoPlan(False, "remove", "stop"),
    ),
    (
        "running unit in /etc: restore, restart",
        _target(False, True),
        st("a.service", fragment=f"{ETC}/a.service"),
        UndoPlan(False, "restore", "restart"),
    ),
    (
        "a unit in a restart loop (activating) ran before: restarted",
        _target(False, True),
        st("a.service", fragment=f"{ETC}/a.service", active_state="activating", sub_state="auto-restart", main_pid=0),
        UndoPlan(False, "restore", "restart"),
    ),
    (
        "a target marked first deploy while something runs is never stopped",
        _target(True, False),
        st("a.service", load_state="not-found"),
        UndoPlan(False, "remove", "restart"),
    ),
]


@pytest.mark.parametrize(("case", "target", "before", "expected"), UNDO, ids=[u[0] for u in UNDO])
def test_undo_plan_never_stops_what_ran(case: str, target: WriteTarget, before: UnitState, expected: UndoPlan) -> None:
    plan = undo_plan(target, before)
    assert plan == expected
    if before.active_state == "active":
        assert not plan.stop_first and plan.then == "restart"


def test_describe_says_what_is_written_and_how_it_is_undone() -> None:
    vendor = decide(
        "app.service",
        st("app.service", fragment="/usr/lib/systemd/system/app.service", dropins=VENDOR_DROPINS),
        look=disk({}),
    )
    assert vendor.describe() == (
        "write /etc/systemd/system/app.service, a copy that shadows /usr/lib/systemd/system/app.service; "
        f"drop-ins still apply: {', '.join(VENDOR_DROPINS)}; undo: remove it"
    )
    linked = decide(
        "app.service",
        st("app.service", fragment=f"{ETC}/app.service"),
        look=disk({f"{ETC}/app.service": link(f"{ETC}/app.service", "/etc/systemd/units/app.service")}),
    )
    assert linked.describe() == (
        "write /etc/systemd/units/app.service through the link /etc/systemd/system/app.service; undo: restore its bytes"
    )
    new = decide("app.service", st("app.service", **NOT_FOUND), look=disk({}))
    assert new.describe() == "write /etc/systemd/system/app.service; undo: remove it (first deploy)"


# -- the file system edge, on a real tree under tmp_path -------------------------------------------


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/units").mkdir(parents=True)
    (root / "srv/app").mkdir(parents=True)
    (root / "etc/systemd/units/app.service").write_text("[Service]\n")
    (root / "srv/app/app.service").write_text("[Service]\n")
    return root


def test_follow_resolves_every_link_under_the_root(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    etc = root / "etc/systemd/system"
    os.symlink("/etc/systemd/units/app.service", etc / "abs.service")
    os.symlink("../units/app.service", etc / "rel.service")
    os.symlink("/etc/systemd/system/rel.service", etc / "chain.service")
    os.symlink("/srv/app", root / "etc/systemd/checkout")  # a directory link on the way
    os.symlink("/etc/systemd/checkout/app.service", etc / "viadir.service")
    os.symlink("/nowhere/app.service", etc / "dangling.service")
    os.symlink("loop2.service", etc / "loop1.service")
    os.symlink("loop1.service", etc / "loop2.service")
    assert follow(f"{ETC}/abs.service", root=root) == (
        "/etc/systemd/units/app.service",
        "file",
        [f"{ETC}/abs.service"],
    )
    assert follow(f"{ETC}/rel.service", root=root)[:2] == ("/etc/systemd/units/app.service", "file")
    assert follow(f"{ETC}/chain.service", root=root) == (
        "/etc/systemd/units/app.service",
        "file",
        [f"{ETC}/chain.service", f"{ETC}/rel.service"],
    )
    assert follow(f"{ETC}/viadir.service", root=root) == (
        "/srv/app/app.service",
        "file",
        [f"{ETC}/viadir.service", "/etc/systemd/checkout"],
    )
    assert follow(f"{ETC}/dangling.service", root=root)[:2] == ("/nowhere/app.service", "absent")
    assert follow(f"{ETC}/loop1.service", root=root)[1] == "loop"
    assert follow("/etc/systemd", root=root) == ("/etc/systemd", "other", [])


def test_resolve_reads_the_disk(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    etc = root / "etc/systemd/system"
    os.symlink("/etc/systemd/units/app.service", etc / "app.service")
    os.symlink("/srv/app/app.service", etc / "web.service")
    os.symlink("/etc/systemd/checkout/app.service", etc / "sneaky.service")
    os.symlink("/srv/app", root / "etc/systemd/checkout")
    (etc / "plain.service").write_text("[Service]\n")

    def linked(name: str) -> UnitState:
        return st(name, fragment=f"{ETC}/{name}", ufs="linked")

    target = resolve("app.service", linked("app.service"), root=root)
    assert (str(target.path), target.via_link, target.exists) == (
        "/etc/systemd/units/app.service",
        f"{ETC}/app.service",
        True,
    )
    with pytest.raises(UnitPathError, match="symlink to /srv/app/app.service, outside /etc/systemd"):
        resolve("web.service", linked("web.service"), root=root)
    with pytest.raises(UnitPathError, match=r"outside /etc/systemd: .*\(via /srv/app/app.service\)"):
        resolve("sneaky.service", linked("sneaky.service"), root=root)
    plain = resolve("plain.service", st("plain.service", fragment=f"{ETC}/plain.service"), root=root)
    assert (str(plain.path), plain.kind, plain.exists, plain.via_link) == (
        f"{ETC}/plain.service",
        "unit-file",
        True,
        "",
    )
    new = resolve("new.service", st("new.service", **NOT_FOUND), root=root)
    assert (str(new.path), new.exists, new.first_deploy) == (f"{ETC}/new.service", False, True)
    (etc / "dir.service").mkdir()
    with pytest.raises(UnitPathError, match="is not a regular file"):
        resolve("dir.service", st("dir.service", **NOT_FOUND), root=root)


def test_look_under_reports_files_links_and_others(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    os.symlink("/etc/systemd/units/app.service", root / "etc/systemd/system/app.service")
    look = look_under(root)
    assert look("/srv/app/app.service") == PathInfo("/srv/app/app.service", "file")
    assert look("/srv/app") == PathInfo("/srv/app", "other")
    assert look("/srv/app/none.service") == PathInfo("/srv/app/none.service", "absent")
    assert look("/srv/app/app.service/x") == PathInfo("/srv/app/app.service/x", "absent")
    assert look(f"{ETC}/app.service") == PathInfo(
        f"{ETC}/app.service", "link", "/etc/systemd/units/app.service", "file", (f"{ETC}/app.service",)
    )


def test_loaded_bytes_are_what_systemd_runs_now(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "usr/lib/systemd/system").mkdir(parents=True)
    (root / "usr/lib/systemd/system/vend.service").write_bytes(b"[Service]\nExecStart=/bin/vendor\n")
    os.symlink("/etc/systemd/units/app.service", root / "etc/systemd/system/app.service")
    vendor = resolve("vend.service", st("vend.service", fragment="/usr/lib/systemd/system/vend.service"), root=root)
    assert loaded_bytes(vendor, root=root) == b"[Service]\nExecStart=/bin/vendor\n"
    linked = resolve("app.service", st("app.service", fragment=f"{ETC}/app.service"), root=root)
    assert loaded_bytes(linked, root=root) == b"[Service]\n"
    new = resolve("new.service", st("new.service", **NOT_FOUND), root=root)
    assert loaded_bytes(new, root=root) is None
    (root / "usr/lib/systemd/system/vend.service").unlink()
    with pytest.raises(InputError, match="vend.service: no such file"):
        loaded_bytes(vendor, root=root)
