"""The gunicorn package against the real Gunicorn: its option table, its argparse parser, finding it in an ExecStart."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unitctl import gunicorn as g
from unitctl.errors import NotGunicornError, RefusedError, UsageError
from unitctl.unitfile import UnitFile

REPO = Path(__file__).resolve().parents[2]


def _gunicorn_parse(argv: list[str]) -> dict[str, object] | None:
    """Parse with Gunicorn's own parser; None when Gunicorn exits with an error."""
    from gunicorn.config import Config

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            ns = Config().parser().parse_args(argv)
    except SystemExit:
        return None
    return {k: v for k, v in vars(ns).items() if v is not None}


def _typed(values: dict[str, object]) -> dict[str, object]:
    """Convert our string values the way Gunicorn's parser types them (int / auto_int)."""
    out: dict[str, object] = {}
    for k, v in values.items():
        typ = g.spec(k).type if k != "args" else "str"
        if typ == "int" and isinstance(v, str):
            out[k] = int(v)
        elif typ == "auto_int" and isinstance(v, str):
            out[k] = int(v.replace("0", "0o", 1) if re.match(r"0(\d)", v) else v, 0)
        else:
            out[k] = v
    return out


def test_option_table_matches_the_installed_gunicorn() -> None:
    spec = importlib.util.spec_from_file_location("gen_gunicorn_options", REPO / "scripts" / "gen_gunicorn_options.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    committed = (REPO / "src" / "unitctl" / "gunicorn" / "_table.py").read_text(encoding="utf-8")
    assert mod.generate() == committed, "run: .venv/bin/python scripts/gen_gunicorn_options.py"


def test_option_table_covers_every_cli_setting() -> None:
    from gunicorn.config import KNOWN_SETTINGS

    for cls in KNOWN_SETTINGS:
        s = cls()
        if s.cli:
            assert g.spec(s.name).flags == tuple(s.cli)
            assert g.spec(s.name).action == (s.action or "store")


SPELLINGS = [
    (["-w", "4", "app:a"], "4"),
    (["-w4", "app:a"], "4"),
    (["-w=4", "app:a"], "4"),
    (["--workers", "4", "app:a"], "4"),
    (["--workers=4", "app:a"], "4"),
    (["app:a", "--workers", "4"], "4"),
    (["-w", "2", "-w", "7", "app:a"], "7"),
    (["-Dw4", "app:a"], "4"),
    (["-Dw", "4", "app:a"], "4"),
]


@pytest.mark.parametrize(("argv", "workers"), SPELLINGS)
def test_workers_spellings_match_gunicorn(argv: list[str], workers: str) -> None:
    got = g.parse_args(argv)
    assert got.values["workers"] == workers
    assert _gunicorn_parse(argv)["workers"] == int(workers)  # type: ignore[index]
    use = got.last("workers")
    assert use is not None and use.value == workers
    assert use.value_index is not None and use.value_start is not None
    assert argv[use.value_index][use.value_start :] == workers


@pytest.mark.parametrize("spelling", ["--preload", "--pre", "--prel", "--preloa"])
def test_preload_abbreviations(spelling: str) -> None:
    got = g.parse_args([spelling, "app:a"])
    assert got.values["preload_app"] is True
    assert _gunicorn_parse([spelling, "app:a"])["preload_app"] is True  # type: ignore[index]
    assert [(u.setting, u.written, u.index) for u in got.uses] == [("preload_app", spelling, 0)]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--work", "4", "app"], "ambiguous option '--work'"),
        (["--worker", "4", "app"], "ambiguous option '--worker'"),
        (["--preload=true", "app"], "--preload takes no value"),
        (["--preload", "true", "app"], "one APP_MODULE"),
        (["app", "--preload", "true"], "unrecognized arguments: true"),
        (["--frobnicate", "app"], "no option '--frobnicate'"),
        (["app", "-w"], "-w expects a value"),
        (["-w", "--preload", "app"], "-w expects a value"),
        (["-R4", "app"], "-R takes no value"),
        (["app", "other"], "one APP_MODULE"),
    ],
)
def test_refusals_name_the_token(argv: list[str], needle: str) -> None:
    with pytest.raises(g.GunicornArgsError) as exc:
        g.parse_args(argv, where="ExecStart=")
    assert needle in str(exc.value)
    assert isinstance(exc.value, RefusedError) and exc.value.exit_code == 3
    if needle != "one APP_MODULE":
        assert _gunicorn_parse(argv) is None  # Gunicorn itself rejects these


def test_double_dash_ends_options() -> None:
    got = g.parse_args(["-w", "3", "--", "app:a"])
    assert got.app == "app:a" and got.values["workers"] == "3" and got.double_dash == 2


_TOKENS = [
    "-w",
    "-w3",
    "-w=5",
    "--workers",
    "--workers=6",
    "--wor",
    "--preload",
    "--pre",
    "--prel",
    "--preload=1",
    "-b",
    "--bind",
    "--bind=unix:/run/x.sock",
    "--bin",
    "-D",
    "-Dw2",
    "-R",
    "-k",
    "gthread",
    "--threads",
    "--thread",
    "4",
    "2",
    "app:application",
    "127.0.0.1:8000",
    "--",
    "-",
    "--access-logfile",
    "--log-file=-",
    "--proxy-protocol",
    "-c",
    "conf.py",
    "--no-sendfile",
    "--no-s",
    "-m",
    "007",
    "--timeout",
    "-t30",
    "--max-requests",
    "-e",
    "A=1",
    "--check-config",
    "--reload",
    "--reuse-port",
    "-x",
    "--zzz",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_TOKENS), max_size=7))
def test_parse_agrees_with_gunicorns_argparse(argv: list[str]) -> None:
    theirs = _gunicorn_parse(argv)
    try:
        ours = g.parse_args(argv)
    except g.GunicornArgsError:
        # We refuse everything Gunicorn refuses, plus more than one APP_MODULE (Gunicorn silently takes the first).
        assert theirs is None or len(theirs["args"]) > 1  # type: ignore[arg-type]
        return
    mine = dict(ours.values)
    mine["args"] = [v for _, v in ours.positionals]
    if theirs is None:
        # unitctl keeps values as strings (systemd may expand ${WORKERS} later): the only disagreement allowed is
        # a value that is not a number for a numeric option.
        with pytest.raises(ValueError):
            for use in ours.uses:
                _typed({use.setting: use.value})
        return
    assert _typed(mine) == theirs
    # every recorded span points at the value as written
    for use in ours.uses:
        if use.value is not None:
            assert use.value_index is not None and use.value_start is not None
            assert argv[use.value_index][use.value_start :] == use.value


@pytest.mark.parametrize(
    ("argv", "launcher", "exe_index", "app"),
    [
        (["/srv/app/.venv/bin/gunicorn", "app:a"], "gunicorn", 0, "app:a"),
        (["gunicorn", "-w", "2", "app:a"], "gunicorn", 0, "app:a"),
        (["/usr/bin/python3", "-m", "gunicorn", "app:a"], "python -m gunicorn", 2, "app:a"),
        (
            ["python3.11", "-u", "-X", "dev", "-W", "ignore", "-m", "gunicorn", "app:a"],
            "python -m gunicorn",
            7,
            "app:a",
        ),
        (["python", "-OOm", "gunicorn", "app:a"], "python -m gunicorn", 2, "app:a"),
        (["python", "-mgunicorn", "app:a"], "python -m gunicorn", 1, "app:a"),
        (["/opt/venv/bin/python", "-m", "gunicorn.app.wsgiapp", "app:a"], "python -m gunicorn.app.wsgiapp", 2, "app:a"),
        (["/usr/bin/poetry", "run", "gunicorn", "app:a"], "poetry run gunicorn", 2, "app:a"),
        (["pipenv", "run", "python", "-m", "gunicorn", "app:a"], "pipenv run python -m gunicorn", 4, "app:a"),
        (["uv", "run", "--frozen", "gunicorn", "app:a"], "uv run gunicorn", 3, "app:a"),
        (["uv", "--directory", "/srv", "run", "gunicorn", "app:a"], "uv run gunicorn", 4, "app:a"),
        (["/usr/bin/env", "-i", "LANG=C", "gunicorn", "app:a"], "env gunicorn", 3, "app:a"),
    ],
)
def test_find_invocation(argv: list[str], launcher: str, exe_index: int, app: str) -> None:
    inv = g.find_invocation(argv)
    assert inv is not None
    assert (inv.launcher, inv.exe_index, inv.args.app) == (launcher, exe_index, app)


def test_find_invocation_inside_sh_c() -> None:
    inv = g.find_invocation(["/bin/sh", "-c", "exec /v/bin/gunicorn -w 'two words' --preload app:a"])
    assert inv is not None and inv.shell is not None
    assert inv.launcher == "gunicorn in sh -c"
    assert inv.argv == ("exec", "/v/bin/gunicorn", "-w", "two words", "--preload", "app:a")
    w = inv.shell.words[3]
    assert inv.shell.text[w.start : w.end] == "'two words'"


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ("cd /srv && exec gunicorn app", "'&'"),
        ("gunicorn $OPTS app", "'$'"),
        ("gunicorn app > /tmp/log", "'>'"),
        ("gunicorn app | tee", "'|'"),
        ("gunicorn `cat opts` app", "'`'"),
        ('gunicorn "$X" app', "inside double quotes"),
        ("FOO=1 gunicorn app", "sets variables"),
        ("gunicorn app\ngunicorn app2", "several lines"),
        ("gunicorn 'app", "unbalanced"),
    ],
)
def test_sh_c_that_is_not_simple_is_refused(script: str, why: str) -> None:
    with pytest.raises(g.GunicornArgsError) as exc:
        g.find_invocation(["/bin/bash", "-c", script])
    assert why in str(exc.value)
    assert exc.value.exit_code == 3


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["/usr/bin/env", "GUNICORN_CMD_ARGS=--preload", "gunicorn", "app:a"], "env sets GUNICORN_CMD_ARGS"),
        (["/usr/bin/env", "-C", "/srv", "gunicorn", "app:a"], "env option '-C'"),
        (["uv", "run", "--with", "x", "--weird", "gunicorn", "app:a"], "uv run` option '--weird'"),
    ],
)
def test_wrappers_unitctl_cannot_follow_are_refused(argv: list[str], why: str) -> None:
    with pytest.raises(g.GunicornArgsError) as exc:
        g.find_invocation(argv)
    assert why in str(exc.value)


def test_sh_c_without_gunicorn_is_not_gunicorn() -> None:
    assert g.find_invocation(["/bin/sh", "-c", "uwsgi --ini x && true"]) is None
    assert g.find_invocation(["/bin/sh", "-c", "exec uwsgi --ini x"]) is None


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["/usr/bin/uwsgi", "--ini", "x.ini"], "uWSGI"),
        (["/v/bin/daphne", "app.asgi:application"], "Daphne"),
        (["/v/bin/uvicorn", "app:app"], "Uvicorn"),
        (["/v/bin/hypercorn", "app:app"], "Hypercorn"),
        (["/v/bin/granian", "--interface", "asgi", "app:app"], "Granian"),
        (["/usr/bin/python3", "-m", "uvicorn", "app:app"], "Uvicorn"),
        (["/usr/bin/python3", "manage.py", "runserver"], None),
    ],
)
def test_other_servers_are_not_gunicorn(argv: list[str], name: str | None) -> None:
    assert g.find_invocation(argv) is None
    assert g.identify_server(argv) == name
    err = g.describe_refusal_for(argv)
    assert isinstance(err, NotGunicornError) and err.exit_code == 3
    if name:
        assert name in str(err)


@given(st.lists(st.text(alphabet="ab-=' \"\\", max_size=5), max_size=4))
def test_shell_split_agrees_with_shlex_on_plain_words(parts: list[str]) -> None:
    import shlex

    script = " ".join(parts)
    try:
        words = g.shell_split(script)
    except g.ShellSyntaxError:
        return  # refused (unbalanced, or a backslash/quote form unitctl does not rewrite): never misread
    assert [w.value for w in words] == shlex.split(script)
    for w in words:
        assert "".join(script[i] for i in w.charmap[:-1]) == w.value


def test_shlex_words_match_shlex_split() -> None:
    import shlex

    for text in ["--preload -w 4", "  -b 'a b'  --x=\"c d\" e\\ f ", "'' \"\"", 'a"b"c', '--bind="x\\"y"']:
        words = g.shlex_words(text)
        assert [w.value for w in words] == shlex.split(text)
        for w in words:
            assert "".join(text[i] for i in w.charmap[:-1]) == w.value


@given(st.lists(st.text(alphabet="ab '\"\\-=", max_size=6), max_size=4))
def test_shlex_words_agree_with_shlex(parts: list[str]) -> None:
    import shlex

    text = " ".join(parts)
    try:
        expected = shlex.split(text)
    except ValueError:
        with pytest.raises(ValueError):
            g.shlex_words(text)
        return
    assert [w.value for w in g.shlex_words(text)] == expected


@pytest.mark.parametrize(
    ("cpus", "cap", "expected"),
    [(1, None, 3), (2, None, 5), (8, None, 17), (8, 9, 9), (2, 100, 5)],
)
def test_auto_workers(cpus: int, cap: int | None, expected: int) -> None:
    assert g.resolve_workers("auto", cpu_count=cpus, max_workers=cap) == expected


@pytest.mark.parametrize(
    ("workers", "cpus", "cap"),
    [("auto", None, None), (0, 2, None), (-1, 2, None), ("x", 2, None), (10, 2, 4), ("auto", 2, 0)],
)
def test_bad_workers_requests(workers: int | str, cpus: int | None, cap: int | None) -> None:
    with pytest.raises(UsageError):
        g.resolve_workers(workers, cpu_count=cpus, max_workers=cap)


def test_parse_config_file_literals_and_computed() -> None:
    facts = g.parse_config_file(
        "import multiprocessing\nworkers = multiprocessing.cpu_count() * 2 + 1\npreload_app = True\n"
        "bind = ['unix:/run/a.sock']\nif True:\n    timeout = 5\n"
    )
    assert facts.values["preload_app"] is True
    assert facts.values["bind"] == ["unix:/run/a.sock"]
    assert "workers" in facts.computed and "timeout" in facts.computed
    with pytest.raises(g.GunicornArgsError):
        g.parse_config_file("workers = (")


UNIT = """[Unit]
Description=x

[Service]
WorkingDirectory=/srv/app
Environment=WEB_CONCURRENCY=3 "GUNICORN_CMD_ARGS=--preload --bind=unix:/run/a.sock"
ExecStart=/srv/app/.venv/bin/gunicorn app:application
"""


def test_effective_settings_precedence() -> None:
    files = {"/srv/app/gunicorn.conf.py": "workers = 7\npreload_app = False\ntimeout = 3\n"}
    s = g.effective_settings(UNIT, read_file=files.get)
    assert (s.workers.value, s.workers.source) == (7, "config file /srv/app/gunicorn.conf.py")
    assert (s.preload.value, s.preload.source) == (True, "GUNICORN_CMD_ARGS")
    assert s.binds.value == ("unix:/run/a.sock",)
    assert (s.app.value, s.app.source) == ("app:application", "command line")
    assert s.config_file == "/srv/app/gunicorn.conf.py"

    s = g.effective_settings(UNIT, read_file=lambda p: None)
    assert (s.workers.value, s.workers.source) == (3, "WEB_CONCURRENCY")
    assert s.warnings == ()

    s = g.effective_settings(UNIT.replace("app:application", "-w 2 app:application"), read_file=files.get)
    assert (s.workers.value, s.workers.source) == (2, "command line")


def test_the_command_line_beats_gunicorn_cmd_args() -> None:
    unit = UNIT.replace('"GUNICORN_CMD_ARGS=--preload', '"GUNICORN_CMD_ARGS=--workers 5 --preload')
    s = g.effective_settings(unit, read_file=lambda p: None)
    assert (s.workers.value, s.workers.source) == (5, "GUNICORN_CMD_ARGS")
    s = g.effective_settings(unit.replace("app:application", "-w 2 app:application"), read_file=lambda p: None)
    assert (s.workers.value, s.workers.source) == (2, "command line")


def test_a_config_file_writing_through_globals_leaves_what_it_does_not_assign_unknown() -> None:
    unit = "[Service]\nWorkingDirectory=/srv/app\nExecStart=/srv/app/.venv/bin/gunicorn app:application\n"
    files = {"/srv/app/gunicorn.conf.py": 'globals()["preload_app"] = True\nworkers = 4\n'}
    s = g.effective_settings(unit, read_file=files.get)
    assert (s.preload.value, s.preload.source) == (None, "config file /srv/app/gunicorn.conf.py (computed)")
    assert s.workers.value == 4


@pytest.mark.parametrize(
    ("config", "preload", "workers"),
    [
        ("from common import *\nworkers = 4\n", None, 4),  # a star import may set preload_app
        ("preload_app = False\nworkers = 4\nfrom common import *\n", None, None),  # ... and rebind what came before
        ("from common import preload_app\n", None, 1),
        ("import preload_app\n", None, 1),
        ("from common import preload_app as other\npreload_app = False\n", False, 1),
    ],
)
def test_a_config_file_importing_names_leaves_them_unknown(config: str, preload: object, workers: object) -> None:
    unit = "[Service]\nWorkingDirectory=/srv/app\nExecStart=/srv/app/.venv/bin/gunicorn app:application\n"
    s = g.effective_settings(unit, read_file={"/srv/app/gunicorn.conf.py": config}.get)
    assert s.preload.value == preload
    if preload is None:
        assert s.preload.source == "config file /srv/app/gunicorn.conf.py (computed)"
    assert s.workers.value == workers


@pytest.mark.parametrize("text", ["A='never closed", 'A="never closed', "A='never closed\nB=1\n"])
def test_an_environment_file_value_whose_quote_never_closes_is_kept(text: str) -> None:
    # systemd keeps such a value (to the end of the file) instead of dropping the assignment.
    env = g.parse_env_file(text)
    assert list(env) == ["A"] and env["A"].startswith("never closed")


def test_effective_settings_warn_about_what_they_cannot_read() -> None:
    unit = UNIT.replace("WorkingDirectory=/srv/app\n", "WorkingDirectory=/srv/app\nEnvironmentFile=-/etc/app.env\n")
    s = g.effective_settings(unit)
    assert any("EnvironmentFile=-/etc/app.env was not read" in w for w in s.warnings)
    assert any("gunicorn.conf.py" in w for w in s.warnings)
    s = g.effective_settings(unit, read_file={"/etc/app.env": "WEB_CONCURRENCY=9\n"}.get)
    assert (s.workers.value, s.workers.source) == (9, "WEB_CONCURRENCY")


def test_effective_settings_config_from_cmd_args_relative_to_working_directory() -> None:
    unit = UNIT.replace("app:application", "-c conf/g.py app:application")
    s = g.effective_settings(unit, read_file={"/srv/app/conf/g.py": "preload_app = True\n"}.get)
    assert s.config_file == "/srv/app/conf/g.py"


def test_find_gunicorn_refusals() -> None:
    two = UNIT + "ExecStart=/srv/app/.venv/bin/gunicorn other:app\n"
    with pytest.raises(g.GunicornArgsError, match="2 ExecStart= commands"):
        g.find_gunicorn(UnitFile.parse(two))
    reset = UNIT + "ExecStart=\nExecStart=/srv/app/.venv/bin/gunicorn other:app\n"
    assert g.find_gunicorn(UnitFile.parse(reset)).invocation.args.app == "other:app"
    with pytest.raises(NotGunicornError, match="no ExecStart="):
        g.find_gunicorn(UnitFile.parse("[Service]\nUser=x\n"))
    hidden = UNIT.replace("app:application", "$OPTS app:application")
    with pytest.raises(g.GunicornArgsError, match="split into words by systemd"):
        g.find_gunicorn(UnitFile.parse(hidden))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1\nB = 2\n", {"A": "1", "B": "2"}),
        ("# c\n; c\n  A=x  \n", {"A": "x"}),
        ("A='a b \\n'\n", {"A": "a b \\n"}),
        ('A="q \\" \\$ \\x"\n', {"A": 'q " $ \\x'}),
        ("A=one\\\ntwo\n", {"A": "onetwo"}),
        ("A=x\\ \n", {"A": "x "}),
        ("1A=x\nnoequals\nB=\n", {"B": ""}),
        ('A="open', {"A": "open"}),
        ('A="open\n', {"A": "open\n"}),
        ("A=x\\", {"A": "x"}),
        ("A=last", {"A": "last"}),
        ("# comment \\\nA=hidden\nC=3", {"C": "3"}),
    ],
)
def test_parse_env_file_reads_like_systemd(text: str, expected: dict[str, str]) -> None:
    assert g.parse_env_file(text) == expected
