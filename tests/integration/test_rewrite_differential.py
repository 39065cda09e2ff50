"""systemd and Gunicorn are the oracle for every golden rewrite.

Each golden case that rewrites (tests/golden/<case>/ with expected.service) is loaded by a real systemd in the
sandbox twice: first as written, then rewritten (or with the generated drop-in). The argv systemd will exec comes
from D-Bus (ExecStartEx, exact) and is checked against ``systemctl show -p ExecStart --value``; the Gunicorn part of
it (also inside ``sh -c``) goes through Gunicorn's OWN parser, ``gunicorn.config.Config().parser()``, in this
process. Workers and preload must be as asked; every other option, and the app, must equal the original's parse.
GUNICORN_CMD_ARGS from the loaded Environment= is checked the same way.

The golden inputs name /srv/venv/bin/gunicorn and /srv/venv/bin/python; here they point at this venv.
"""

from __future__ import annotations

import contextlib
import io
import json
import posixpath
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apphelpers import bus_path

from unitctl.rewrite import RewriteSpec, dropin_for, rewrite_unit
from unitctl.sandbox import Sandbox

pytestmark = pytest.mark.systemd

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
VENV_BIN = Path(sys.prefix) / "bin"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "expected.service").exists())
UNIT_DIR = "/etc/systemd/system"


def _venv(text: str) -> str:
    return text.replace("/srv/venv/bin/gunicorn", str(VENV_BIN / "gunicorn")).replace(
        "/srv/venv/bin/python", str(VENV_BIN / "python")
    )


def _opts(case: str) -> dict[str, Any]:
    return json.loads((GOLDEN / case / "options.json").read_text())  # type: ignore[no-any-return]


def _unit(case: str) -> str:
    return f"uxrw-{case.replace('_', '-')}.service"


def _rewrite(case: str) -> tuple[str, str]:
    """Return (the unit as installed first, the main file or drop-in to install second)."""
    opts = _opts(case)
    text = _venv((GOLDEN / case / "input.service").read_bytes().decode("utf-8"))
    files = opts.get("files")
    func = dropin_for if opts.get("mode") == "dropin" else rewrite_unit
    spec = RewriteSpec(
        workers=opts.get("workers"),
        no_preload=bool(opts.get("no_preload")),
        max_workers=opts.get("max_workers"),
        cpu_count=opts.get("cpu_count"),
    )
    result = func(text, spec, read_file=None if files is None else files.get)
    # The same rewrite as the golden file, with the venv path in place.
    assert result.text == _venv((GOLDEN / case / "expected.service").read_bytes().decode("utf-8"))
    return text, result.text


def _loaded(box: Sandbox, unit: str) -> tuple[list[str], list[str]]:
    """Return (executable + arguments of the one ExecStart, Environment=) as systemd loaded them."""

    def prop(name: str) -> Any:
        out = box.run(
            ["busctl", "--json=short", "get-property", "org.freedesktop.systemd1", bus_path(unit),
             "org.freedesktop.systemd1.Service", name],
            check=True,
        ).stdout  # fmt: skip
        return json.loads(out)["data"]

    cmds = prop("ExecStartEx")
    assert len(cmds) == 1, f"{unit}: systemd loaded {len(cmds)} ExecStart commands"
    path, argv = cmds[0][0], list(cmds[0][1])
    shown = box.systemctl("show", unit, "-p", "ExecStart", "--value", check=True).stdout
    assert f"path={path} ; argv[]={' '.join(argv)} ;" in shown
    # The executable, then the arguments (with '@', argv[0] is only the process name).
    return [path, *argv[1:]], list(prop("Environment"))


def _gunicorn_args(argv: list[str]) -> list[str]:
    """Locate Gunicorn's own arguments in an argv (independently of unitctl): after gunicorn / -m gunicorn."""
    if posixpath.basename(argv[0]) in ("sh", "bash") and "-c" in argv:
        return _gunicorn_args(shlex.split(argv[argv.index("-c") + 1]))
    for i, word in enumerate(argv):
        if posixpath.basename(word) in ("gunicorn", "gunicorn3") or word in ("-mgunicorn",):
            return argv[i + 1 :]
    raise AssertionError(f"no gunicorn in {argv!r}")


def _before_gunicorn(argv: list[str]) -> list[str]:
    """Return the words that come before Gunicorn's arguments (for sh -c: the shell's and the script's)."""
    if posixpath.basename(argv[0]) in ("sh", "bash") and "-c" in argv:
        k = argv.index("-c") + 1
        return argv[:k] + _before_gunicorn(shlex.split(argv[k])) + argv[k + 1 :]
    return argv[: len(argv) - len(_gunicorn_args(argv))]


def _parse(args: list[str]) -> dict[str, Any]:
    from gunicorn.config import Config

    with contextlib.redirect_stderr(io.StringIO()):
        ns = Config().parser().parse_args(args)
    return {k: v for k, v in vars(ns).items() if v is not None}


def _expand(argv: list[str], env: list[str]) -> list[str]:
    """Expand ${NAME} in the arguments as systemd does when it execs the command."""
    values = dict(e.partition("=")[::2] for e in env)
    return argv[:1] + [re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), ""), a) for a in argv[1:]]


def _cmd_args(env: list[str]) -> dict[str, Any] | None:
    for item in reversed(env):
        if item.startswith("GUNICORN_CMD_ARGS="):
            return _parse(shlex.split(item.partition("=")[2]))
    return None


@pytest.fixture(scope="module")
def loaded(sandbox: Sandbox) -> Iterator[dict[str, tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]]]:
    """Load every case as written, then rewritten; return what systemd loaded each time."""
    plans = {case: _rewrite(case) for case in CASES}
    before: dict[str, tuple[list[str], list[str]]] = {}
    after: dict[str, tuple[list[str], list[str]]] = {}
    written: list[str] = []
    try:
        for case, (orig, _) in plans.items():
            sandbox.write_file(f"{UNIT_DIR}/{_unit(case)}", orig.encode("utf-8"))
            written.append(_unit(case))
        sandbox.systemctl("daemon-reload", check=True)
        for case in plans:
            before[case] = _loaded(sandbox, _unit(case))
        for case, (_, new) in plans.items():
            if _opts(case).get("mode") == "dropin":
                if new:
                    sandbox.write_file(f"{UNIT_DIR}/{_unit(case)}.d/50-unitctl.conf", new.encode("utf-8"))
            else:
                sandbox.write_file(f"{UNIT_DIR}/{_unit(case)}", new.encode("utf-8"))
        sandbox.systemctl("daemon-reload", check=True)
        for case in plans:
            after[case] = _loaded(sandbox, _unit(case))
        yield {case: (before[case], after[case]) for case in plans}
    finally:
        for unit in written:
            dropins = sandbox.host_path(f"{UNIT_DIR}/{unit}.d")
            if dropins.exists():
                for child in dropins.iterdir():
                    child.unlink()
                dropins.rmdir()
            sandbox.host_path(f"{UNIT_DIR}/{unit}").unlink(missing_ok=True)
        sandbox.systemctl("daemon-reload", check=True)


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES)
def test_gunicorn_sees_exactly_the_requested_change(
    box: Sandbox, loaded: dict[str, tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]], case: str
) -> None:
    opts = _opts(case)
    (argv0, env0), (argv1, env1) = loaded[case]
    old, new = _parse(_gunicorn_args(_expand(argv0, env0))), _parse(_gunicorn_args(_expand(argv1, env1)))
    old_env, new_env = _cmd_args(env0), _cmd_args(env1)

    workers = opts.get("workers")
    if workers is not None:
        want = workers if workers != "auto" else min(2 * opts["cpu_count"] + 1, opts.get("max_workers") or 10**6)
        assert new["workers"] == want
    else:
        assert new.get("workers") == old.get("workers")
    if opts.get("no_preload"):
        assert "preload_app" not in new
        assert new_env is None or "preload_app" not in new_env
    else:
        assert new.get("preload_app") == old.get("preload_app")

    ignore = {"workers", "preload_app"}
    assert {k: v for k, v in new.items() if k not in ignore} == {k: v for k, v in old.items() if k not in ignore}
    if old_env is not None or new_env is not None:
        no_args: dict[str, Any] = {"args": []}
        assert {k: v for k, v in (new_env or no_args).items() if k not in ignore} == {
            k: v for k, v in (old_env or no_args).items() if k not in ignore
        }
    # Everything else systemd runs is unchanged: the executable and the words before Gunicorn's arguments.
    assert _before_gunicorn(argv1) == _before_gunicorn(argv0)
    other_env = sorted(e for e in env0 if not e.startswith("GUNICORN_CMD_ARGS="))
    assert sorted(e for e in env1 if not e.startswith("GUNICORN_CMD_ARGS=")) == other_env
