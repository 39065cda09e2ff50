"""systemd itself is the oracle: our reading of every corpus unit must match what systemd 252 loaded.

Each unit of tests/unit/corpus/exec is installed in the sandbox; after one daemon-reload the exact
commands come from D-Bus (``busctl --json=short get-property ... ExecStartEx``: path, argv array and
flags), and ``systemctl show -p ExecStart --value`` is checked as well (its argv[] is space-joined).
systemd resolves % specifiers at load time, so our word values go through the few specifiers the
corpus uses (%% %n %N %p; unknown ones such as %( stay as written, as systemd 252 keeps them).
Every unit of tests/unit/corpus/bad is one our parser refuses; systemd must refuse it too.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apphelpers import bus_path

from unitctl import execline
from unitctl.sandbox import Sandbox
from unitctl.unitfile import Edit, UnitFile, dropin_paths, load_unit

pytestmark = pytest.mark.systemd

CORPUS = Path(__file__).resolve().parent.parent / "unit" / "corpus"
GOOD = sorted((CORPUS / "exec").glob("*.service"))
BAD = sorted((CORPUS / "bad").glob("*.service"))
FLAGS = {"-": "ignore-failure", ":": "no-env-expand", "+": "privileged", "!": "no-setuid", "!!": "ambient"}
EXEC_KEYS = ("ExecStart", "ExecStartPre", "ExecStartPost", "ExecReload", "ExecStop", "ExecStopPost")


def _unit_name(kind: str, path: Path) -> str:
    return f"uxo-{kind}-{path.stem}.service"


def _resolve(text: str, unit: str) -> str:
    table = {"%": "%", "n": unit, "N": unit.rsplit(".", 1)[0], "p": unit.rsplit(".", 1)[0].split("@")[0]}
    return re.sub(r"%(.)", lambda m: table.get(m.group(1), m.group(0)), text)


def _bus_commands(box: Sandbox, unit: str, prop: str) -> list[tuple[str, list[str], list[str]]]:
    out = box.run(
        ["busctl", "--json=short", "get-property", "org.freedesktop.systemd1", bus_path(unit),
         "org.freedesktop.systemd1.Service", prop],
        check=True,
    ).stdout  # fmt: skip
    return [(path, argv, sorted(flags)) for path, argv, flags, *_ in json.loads(out)["data"]]


def _ours(cmd: execline.Command, unit: str) -> tuple[str, list[str], list[str]]:
    flags = sorted(FLAGS[p] for p in ("-", ":", "+") if p in cmd.prefixes)
    if cmd.privileges in ("!", "!!"):
        flags = sorted([*flags, FLAGS[cmd.privileges]])
    return (
        execline.path_simplify(_resolve(cmd.words[0].value, unit)),
        [_resolve(a, unit) for a in cmd.argv],
        flags,
    )


@pytest.fixture(scope="module")
def installed(sandbox: Sandbox) -> Iterator[dict[str, Path]]:
    """Install the whole corpus once (one daemon-reload) and remove it afterwards."""
    units = {_unit_name("good", p): p for p in GOOD} | {_unit_name("bad", p): p for p in BAD}
    for unit, path in units.items():
        sandbox.write_file(f"/etc/systemd/system/{unit}", path.read_bytes())
    sandbox.systemctl("daemon-reload", check=True)
    yield units
    for unit in units:
        sandbox.host_path(f"/etc/systemd/system/{unit}").unlink()
    sandbox.systemctl("daemon-reload", check=True)


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_our_split_matches_what_systemd_loaded(box: Sandbox, installed: dict[str, Path], path: Path) -> None:
    unit = _unit_name("good", path)
    parsed = UnitFile.from_bytes(path.read_bytes(), path=str(path))
    assert box.unit_properties(unit, "LoadState") == {"LoadState": "loaded"}
    keys = [k for k in EXEC_KEYS if parsed.entries("Service", k)]
    assert keys, "every corpus unit has at least one Exec*= line"
    for key in keys:
        ours = [_ours(c, unit) for v in parsed.values("Service", key) for c in execline.split(v)]
        assert _bus_commands(box, unit, key + "Ex") == ours, key


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_systemctl_show_agrees(box: Sandbox, installed: dict[str, Path], path: Path) -> None:
    unit = _unit_name("good", path)
    parsed = UnitFile.from_bytes(path.read_bytes(), path=str(path))
    shown = box.systemctl("show", "-p", "ExecStart", "--value", unit, check=True).stdout
    # Text-mode output turns a "\r" inside an argument into "\n" (universal newlines); the D-Bus test is exact.
    got = re.findall(r"\{ path=(.*?) ; argv\[\]=(.*?) ; ignore_errors=(yes|no) ;", shown, re.DOTALL)
    ours = [
        (p, " ".join(argv).replace("\r", "\n"), "yes" if "ignore-failure" in flags else "no")
        for v in parsed.values("Service", "ExecStart")
        for p, argv, flags in [_ours(c, unit) for c in execline.split(v)]
    ]
    assert got == ours


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_what_we_refuse_systemd_refuses(box: Sandbox, installed: dict[str, Path], path: Path) -> None:
    unit = _unit_name("bad", path)
    (value,) = UnitFile.from_bytes(path.read_bytes()).values("Service", "ExecStart")
    with pytest.raises(execline.ExecSyntaxError):
        execline.split(value)
    # Either the unit fails to load (bad-setting) or systemd dropped the command and has nothing to run.
    state = box.unit_properties(unit, "LoadState")["LoadState"]
    assert state == "bad-setting" or _bus_commands(box, unit, "ExecStartEx") == []
    assert state != "loaded", "a service without ExecStart= is refused as well"


def test_executable_given_as_variable_is_taken_literally_by_systemd(box: Sandbox) -> None:
    """We refuse ``ExecStart=$FOO``: systemd loads it but treats "$FOO" as a file name it will never find."""
    box.write_file("/etc/systemd/system/uxo-var-exe.service", "[Service]\nType=oneshot\nExecStart=$FOO x\n")
    box.systemctl("daemon-reload", check=True)
    assert _bus_commands(box, "uxo-var-exe.service", "ExecStartEx") == [("$FOO", ["$FOO", "x"], [])]
    with pytest.raises(execline.ExecSyntaxError, match="variable"):
        execline.split("$FOO x")


DROPIN_FILES = {
    "/etc/systemd/system/uxd-merge-x.service": "[Service]\nType=oneshot\nExecStart=/bin/echo main\n",
    # Same file name in /etc and /usr/local/lib: the one in /etc masks the other.
    # (/run is a tmpfs inside the container: files written through the overlay would be hidden.)
    "/etc/systemd/system/uxd-merge-x.service.d/50-same.conf": "[Service]\nExecStart=/bin/echo etc-50\n",
    "/usr/local/lib/systemd/system/uxd-merge-x.service.d/50-same.conf": "[Service]\nExecStart=/bin/echo masked\n",
    # Order is by file name across directories, whatever the directory.
    "/usr/lib/systemd/system/uxd-merge-x.service.d/10-reset.conf": "[Service]\nExecStart=\nExecStart=/bin/echo lib10\n",
    "/etc/systemd/system/uxd-merge-.service.d/30-prefix.conf": "[Service]\nExecStart=/bin/echo prefix-30\n",
    "/etc/systemd/system/uxd-.service.d/05-short-prefix.conf": "[Service]\nExecStartPre=/bin/echo pre-05\n",
    "/etc/systemd/system/uxd-merge-x.service.d/not-a-dropin.txt": "[Service]\nExecStart=/bin/echo ignored\n",
}


def test_dropin_order_and_merge_match_systemd(box: Sandbox) -> None:
    for path, text in DROPIN_FILES.items():
        box.write_file(path, text)
    try:
        box.systemctl("daemon-reload", check=True)
        root = box.host_path("/")
        shown = box.unit_properties("uxd-merge-x.service", "DropInPaths")["DropInPaths"].split()
        assert dropin_paths("uxd-merge-x.service", root=root) == shown
        assert shown[0].endswith("05-short-prefix.conf") and shown[-1] == (
            "/etc/systemd/system/uxd-merge-x.service.d/50-same.conf"
        )
        unit = load_unit("uxd-merge-x.service", root=root)
        for key in ("ExecStart", "ExecStartPre"):
            ours = [_ours(c, "uxd-merge-x.service") for v in unit.values("Service", key) for c in execline.split(v)]
            assert _bus_commands(box, "uxd-merge-x.service", key + "Ex") == ours
        assert [c[1] for c in _bus_commands(box, "uxd-merge-x.service", "ExecStartEx")] == [
            ["/bin/echo", "lib10"], ["/bin/echo", "prefix-30"], ["/bin/echo", "etc-50"]
        ]  # fmt: skip
    finally:
        for path in DROPIN_FILES:
            box.host_path(path).unlink(missing_ok=True)
        for d in ("/etc/systemd/system/uxd-merge-x.service.d", "/usr/lib/systemd/system/uxd-merge-x.service.d",
                  "/usr/local/lib/systemd/system/uxd-merge-x.service.d",
                  "/etc/systemd/system/uxd-merge-.service.d", "/etc/systemd/system/uxd-.service.d"):  # fmt: skip
            if box.host_path(d).is_dir():
                box.host_path(d).rmdir()
        box.systemctl("daemon-reload", check=True)


INSTANCE_FILES = {
    "/etc/systemd/system/uxi-web@.service": "[Service]\nType=oneshot\nExecStart=/bin/echo %i\n",
    "/etc/systemd/system/uxi-web@blue.service.d/40-inst.conf": "[Service]\nExecStartPost=/bin/echo inst-40\n",
    "/etc/systemd/system/uxi-web@.service.d/30-tpl.conf": "[Service]\nExecStartPost=/bin/echo tpl-30\n",
    "/etc/systemd/system/uxi-.service.d/20-prefix.conf": "[Service]\nExecStartPost=/bin/echo prefix-20\n",
    # same file name as the instance's own drop-in: the more specific directory wins
    "/etc/systemd/system/uxi-.service.d/40-inst.conf": "[Service]\nExecStartPost=/bin/echo masked\n",
    "/etc/systemd/system/uxi-@blue.service.d/25-prefix-inst.conf": "[Service]\nExecStartPost=/bin/echo pi-25\n",
    "/etc/systemd/system/uxi-@.service.d/26-prefix-tpl.conf": "[Service]\nExecStartPost=/bin/echo pt-26\n",
    # the top-level drop-in of every service (systemd >= 246), harmless for the other units
    "/etc/systemd/system/service.d/99-uxi-top.conf": "[Unit]\nDocumentation=man:unitctl-oracle(1)\n",
}


def test_instance_template_prefix_and_top_level_dropins_match_systemd(box: Sandbox) -> None:
    for path, text in INSTANCE_FILES.items():
        box.write_file(path, text)
    try:
        box.systemctl("daemon-reload", check=True)
        root = box.host_path("/")
        name = "uxi-web@blue.service"
        shown = box.unit_properties(name, "DropInPaths")["DropInPaths"].split()
        assert dropin_paths(name, root=root) == shown
        assert len(shown) == 6 and "/etc/systemd/system/uxi-.service.d/40-inst.conf" not in shown
        unit = load_unit(name, root=root)
        assert unit.main.path == "/etc/systemd/system/uxi-web@.service"
        ours = [_ours(c, name) for v in unit.values("Service", "ExecStartPost") for c in execline.split(v)]
        assert _bus_commands(box, name, "ExecStartPostEx") == ours
        assert [argv[1] for _, argv, _ in ours] == ["prefix-20", "pi-25", "pt-26", "tpl-30", "inst-40"]
    finally:
        for path in INSTANCE_FILES:
            box.host_path(path).unlink(missing_ok=True)
        for path in INSTANCE_FILES:
            d = box.host_path(path).parent
            if d.name.endswith(".d") and d.is_dir():
                d.rmdir()
        box.systemctl("daemon-reload", check=True)


ENV_UNIT = (
    "[Service]\nType=oneshot\nExecStart=/bin/true\n"
    'Environment="A=1" ; B="x y" C=\\x41 \'D=it\\\'s\' E=a\\tb\n'
    "Environment=F=\\d G=never\n"  # an unknown escape: systemd ignores the whole line
    "Environment=H=\\\n  continued\n"
)


def test_split_words_reads_environment_lines_as_systemd_does(box: Sandbox) -> None:
    box.write_file("/etc/systemd/system/uxo-env.service", ENV_UNIT)
    box.systemctl("daemon-reload", check=True)
    out = box.run(
        ["busctl", "--json=short", "get-property", "org.freedesktop.systemd1", bus_path("uxo-env.service"),
         "org.freedesktop.systemd1.Service", "Environment"],
        check=True,
    ).stdout  # fmt: skip
    ours: list[str] = []
    for value in UnitFile.parse(ENV_UNIT).values("Service", "Environment"):
        try:
            words = execline.split_words(value, relax_escapes=False, what="Environment=")
        except execline.ExecSyntaxError:
            continue
        ours += [w.value for w in words if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", w.value, re.DOTALL)]
    assert json.loads(out)["data"] == ours == ["A=1", "B=x y", "C=A", "D=it's", "E=a\tb", "H="]


WARN_UNIT = (
    "Description=before any section\n[Unit]\nnoeq\n=novalue\nDescription=ok \\\n  # skipped\n  joined\n"
    "[Service]\nType=oneshot\nExecStart=/bin/true\n  also no equals\n"
)


def test_lines_systemd_ignores_are_our_warnings_at_the_same_lines(box: Sandbox) -> None:
    path = "/etc/systemd/system/uxo-warn.service"
    box.write_file(path, WARN_UNIT)
    box.systemctl("daemon-reload", check=True)
    # systemd loads a unit nobody references on demand: reading a property loads it (and logs its warnings)
    parsed = UnitFile.parse(WARN_UNIT, path=path)
    shown = box.unit_properties("uxo-warn.service", "Description")["Description"]
    assert shown == parsed.get("Unit", "Description") == "ok    joined"
    ours = sorted(w.line for w in parsed.warnings)
    assert ours == [1, 3, 4, 11]
    logged: list[int] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = box.run(["journalctl", "-b", "-o", "cat", "--no-pager"], check=True).stdout
        logged = sorted({int(m) for m in re.findall(re.escape(path) + r":(\d+): (?:Assignment|Missing)", log)})
        if logged == ours:
            break
        time.sleep(0.2)
    assert logged == ours


RESET_UNIT = (
    "[Unit]\nAfter=network.target\nAfter=\nAfter=time-sync.target\nWants=network.target\nWants=\n"
    "Documentation=man:a(1)\nDocumentation=\nDocumentation=man:b(1)\n"
    "[Service]\nType=oneshot\nExecStart=/bin/true\nEnvironment=A=1\nEnvironment=\nEnvironment=B=2\n"
)


def test_which_empty_assignments_reset_a_list_matches_systemd(box: Sandbox) -> None:
    box.write_file("/etc/systemd/system/uxo-reset.service", RESET_UNIT)
    box.systemctl("daemon-reload", check=True)
    shown = box.unit_properties("uxo-reset.service", "After", "Wants", "Documentation", "Environment")
    u = UnitFile.parse(RESET_UNIT)
    assert u.values("Unit", "After") == ["network.target", "time-sync.target"]
    assert set(u.values("Unit", "After")) <= set(shown["After"].split())  # plus systemd's implicit ones
    assert shown["Wants"].split() == u.values("Unit", "Wants") == ["network.target"]
    assert shown["Documentation"] == '"man:b(1)"' and u.values("Unit", "Documentation") == ["man:b(1)"]
    assert shown["Environment"] == "B=2" and u.values("Service", "Environment") == ["B=2"]


def test_minimal_edits_are_read_by_systemd_as_intended(box: Sandbox) -> None:
    """Edit a continued ExecStart= (replace a word, delete two words across lines), add and remove entries."""
    u = UnitFile.from_bytes((CORPUS / "exec" / "gunicorn.service").read_bytes())
    entry = u.entries("Service", "ExecStart")[0]
    (cmd,) = execline.split(entry.value)
    argv = cmd.argv
    i_workers = argv.index("--workers") + 1
    i_bind = argv.index("--bind")
    w, b, after_b = cmd.words[i_workers], cmd.words[i_bind], cmd.words[i_bind + 2]
    u.edit_value(entry, [Edit(w.start, w.end, "8"), Edit(b.start, after_b.start, "")])
    u.add_entry("Service", "Restart", "on-failure", after=entry)
    u.remove_entry(u.entries("Service", "ExecReload")[0])
    text = u.to_bytes()
    assert b"    # --preload\n" in text  # the comment line inside the continuation survived
    box.write_file("/etc/systemd/system/uxo-edited.service", text)
    box.systemctl("daemon-reload", check=True)
    expected = argv[:i_workers] + ["8"] + argv[i_workers + 1 : i_bind] + argv[i_bind + 2 :]
    expected = [_resolve(a, "uxo-edited.service") for a in expected]
    assert [c[1] for c in _bus_commands(box, "uxo-edited.service", "ExecStartEx")] == [expected]
    props = box.unit_properties("uxo-edited.service", "Restart", "LoadState")
    assert props == {"Restart": "on-failure", "LoadState": "loaded"}
    assert _bus_commands(box, "uxo-edited.service", "ExecReloadEx") == []
