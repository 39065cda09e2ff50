"""rewrite.py: properties over generated command lines (checked by Gunicorn's own parser) and focused cases."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from unitctl import execline
from unitctl.errors import NotGunicornError, TemplateUnitError, UsageError
from unitctl.gunicorn import GunicornArgsError
from unitctl.placeholders import check_not_template
from unitctl.rewrite import RewriteError, RewriteSpec, dropin_for, rewrite_unit
from unitctl.unitfile import UnitFile

GU = "/srv/venv/bin/gunicorn"


def _gunicorn(args: list[str]) -> dict[str, Any] | None:
    from gunicorn.config import Config

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            ns = Config().parser().parse_args(args)
    except SystemExit:
        return None
    return {k: v for k, v in vars(ns).items() if v is not None}


def _exec_args(text: str) -> list[str]:
    """Return Gunicorn's arguments of the unit's one ExecStart, as systemd splits them."""
    values = [v for v in UnitFile.parse(text).values("Service", "ExecStart") if v.strip()]
    assert len(values) == 1
    (cmd,) = execline.split(values[0])
    return cmd.argv[1:]


# -- generated command lines ------------------------------------------------------------------------------------

OPTION_GROUPS = [
    ["-w", "3"],
    ["-w3"],
    ["-w=2"],
    ["--workers", "7"],
    ["--workers=8"],
    ["--preload"],
    ["--pre"],
    ["--prel"],
    ["-b", "127.0.0.1:8000"],
    ["--bind=unix:/run/app/a b.sock"],
    ["--bind", "[::1]:9000"],
    ["--timeout", "30"],
    ["-t30"],
    ["-k", "gthread"],
    ["--threads", "4"],
    ["--access-logfile", "-"],
    ["--log-level", "debug"],
    ["-e", "A=b c"],
    ["--max-requests=1000"],
    ["-R"],
    ["-Rw4"],
    ["--no-sendfile"],
]
SEPARATORS = [" ", "  ", "\t", " \\\n    ", " \\\n# a comment\n    ", " \\\n; another\n\t"]


def _raw(word: str, style: int) -> str:
    """Write one word the way people do: plain, double-quoted, single-quoted, or quoted after '='."""
    plain_ok = execline.quote(word) == word
    if style == 0 and plain_ok:
        return word
    if style == 2 and "'" not in word:
        return f"'{word}'"
    if style == 3 and "=" in word and word.startswith("--"):
        name, _, value = word.partition("=")
        return f'{name}="{value}"'
    return execline.quote(word) if plain_ok else f'"{word}"'


@st.composite
def command_lines(draw: st.DrawFn) -> tuple[list[str], str]:
    groups = draw(st.lists(st.sampled_from(OPTION_GROUPS), max_size=6))
    app_at = draw(st.integers(min_value=0, max_value=len(groups)))
    groups = [*groups[:app_at], ["app.wsgi:application"], *groups[app_at:]]
    words = [w for g in groups for w in g]
    raw = GU
    for w in words:
        raw += draw(st.sampled_from(SEPARATORS)) + _raw(w, draw(st.integers(min_value=0, max_value=3)))
    return words, raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    command_lines(),
    st.one_of(st.none(), st.integers(min_value=1, max_value=12)),
    st.booleans(),
)
def test_rewrite_gives_gunicorn_exactly_the_requested_change(
    line: tuple[list[str], str], workers: int | None, no_preload: bool
) -> None:
    words, raw = line
    before = _gunicorn(words)
    assume(before is not None)
    assert before is not None
    text = f"[Unit]\nDescription=x\n\n[Service]\nType=notify\nExecStart={raw}\nRestart=always\n"
    assert _exec_args(text) == words  # the generator wrote what it meant

    result = rewrite_unit(text, RewriteSpec(workers=workers, no_preload=no_preload))
    after = _gunicorn(_exec_args(result.text))
    assert after is not None, result.text
    if workers is not None:
        assert after["workers"] == workers
    else:
        assert after.get("workers") == before.get("workers")
    if no_preload:
        assert "preload_app" not in after
    else:
        assert after.get("preload_app") == before.get("preload_app")
    rest = {"workers", "preload_app"}
    assert {k: v for k, v in after.items() if k not in rest} == {k: v for k, v in before.items() if k not in rest}

    # Outside ExecStart= nothing moves; comment lines inside it all stay.
    assert result.text.startswith("[Unit]\nDescription=x\n\n[Service]\nType=notify\nExecStart=")
    assert result.text.endswith("\nRestart=always\n")
    comments = [ln for ln in text.splitlines() if ln[:1] in "#;"]
    assert [ln for ln in result.text.splitlines() if ln[:1] in "#;"] == comments
    # No blank line, and no line left holding nothing but a continuation unless a comment forced it.
    assert "\n\n[Service]" in result.text and result.text.count("\n\n") == 1
    # A second run finds nothing to do.
    again = rewrite_unit(result.text, RewriteSpec(workers=workers, no_preload=no_preload))
    assert again.text == result.text and again.changes == []
    assert (result.text != text) == bool(result.changes)


# -- focused cases ----------------------------------------------------------------------------------------------

UNIT = "[Service]\nExecStart=" + GU + " -w 9 --preload app:a\n"


def test_noop_is_byte_identical_and_reports_nothing() -> None:
    text = "\ufeff[Service]\r\nExecStart=" + GU + " --workers=5   app:a\r\n# trailing comment"
    result = rewrite_unit(text, RewriteSpec(workers=5, no_preload=True))
    assert result.text == text
    assert result.changes == [] and not result.changed


def test_only_the_value_bytes_change() -> None:
    result = rewrite_unit(UNIT, RewriteSpec(workers=12))
    assert result.text == UNIT.replace("-w 9", "-w 12")
    assert result.changes == ["workers 9 → 12"]
    assert result.warnings == []  # a command-line workers beats config files and environment files


def test_auto_uses_the_given_cpu_count_and_cap() -> None:
    assert "-w 9 " in rewrite_unit(UNIT, RewriteSpec(workers="auto", cpu_count=4)).text
    assert "-w 4 " in rewrite_unit(UNIT, RewriteSpec(workers="auto", cpu_count=4, max_workers=4)).text
    with pytest.raises(UsageError):
        rewrite_unit(UNIT, RewriteSpec(workers="auto"))


def test_read_file_reveals_preload_in_the_config_file() -> None:
    unit = "[Service]\nWorkingDirectory=/srv/app\nExecStart=" + GU + " app:a\n"
    files = {"/srv/app/gunicorn.conf.py": "preload_app = True\n"}
    result = rewrite_unit(unit, RewriteSpec(no_preload=True), read_file=files.get)
    assert result.text == unit
    assert result.warnings == [
        "/srv/app/gunicorn.conf.py sets preload_app; Gunicorn has no --no-preload to override it from the unit: "
        "remove preload_app from that file"
    ]
    clean = rewrite_unit(
        unit, RewriteSpec(no_preload=True), read_file={"/srv/app/gunicorn.conf.py": "timeout = 5\n"}.get
    )
    assert clean.warnings == []


def test_sh_c_word_with_escapes_is_requoted_whole() -> None:
    unit = '[Service]\nExecStart=/bin/sh -c "exec ' + GU + " -w 9 --bind \\'127.0.0.1:80\\' app:a\"\n"
    result = rewrite_unit(unit, RewriteSpec(workers=3, no_preload=True))
    (cmd,) = execline.split(UnitFile.parse(result.text).get("Service", "ExecStart") or "")
    assert cmd.argv[2] == "exec " + GU + " -w 3 --bind '127.0.0.1:80' app:a"


def test_proxy_protocol_swallowing_the_app_is_refused_not_corrupted() -> None:
    unit = "[Service]\nExecStart=" + GU + " --proxy-protocol --preload app:a\n"
    with pytest.raises(RewriteError, match="proxy-protocol"):
        rewrite_unit(unit, RewriteSpec(no_preload=True))


def test_dropin_for_a_continued_command() -> None:
    unit = "[Service]\nExecStart=-" + GU + " \\\n  --preload \\\n  -w 9 \\\n  'app:a'\n"
    result = dropin_for(unit, RewriteSpec(workers=4, no_preload=True))
    assert result.text == "[Service]\nExecStart=\nExecStart=-" + GU + " -w 4 'app:a'\n"
    assert result.changes == ["workers 9 → 4", "preload removed"]
    assert dropin_for(result.text.replace("ExecStart=\n", ""), RewriteSpec(workers=4, no_preload=True)).text == ""


def test_env_wrapper_and_other_launchers_are_not_silently_ignored() -> None:
    with pytest.raises(NotGunicornError, match="uWSGI"):
        rewrite_unit("[Service]\nExecStart=/usr/bin/uwsgi --ini a.ini\n", RewriteSpec(workers=2))


@pytest.mark.parametrize(
    "text",
    [
        "[Service]\nExecStart={{ venv }}/bin/gunicorn app:a\n",
        "[Service]\n{% if x %}ExecStart=/x{% endif %}\n",
        "[Service]\nExecStart=@BINDIR@/gunicorn app:a\n",
    ],
)
def test_templates_are_refused(text: str) -> None:
    with pytest.raises(TemplateUnitError) as exc:
        rewrite_unit(text, RewriteSpec(workers=2))
    assert exc.value.exit_code == 3 and "line 2" in str(exc.value)


def test_not_templates() -> None:
    check_not_template("[Service]\nExecStart=@/usr/bin/gunicorn gunicorn@app app:a\nUser=%i\n")


def test_refusals_leave_no_partial_result() -> None:
    two = UNIT + "ExecStart=" + GU + " other:app\n"
    with pytest.raises(GunicornArgsError, match="2 ExecStart= commands"):
        rewrite_unit(two, RewriteSpec(workers=2))


def test_placeholders_in_comment_lines_are_not_a_template() -> None:
    """systemd never reads comment lines: '# replace @VENV@' in a comment does not make the unit a template."""
    text = (
        "[Service]\n# rendered from app.service.in (@VENV@ filled in); {{ jinja }} was here\n"
        "ExecStart=/v/bin/gunicorn -w 2 app:app\n"
    )
    result = rewrite_unit(text, RewriteSpec(workers=3))
    assert result.text == text.replace("-w 2", "-w 3")


def test_placeholder_outside_comments_is_refused_with_its_line() -> None:
    text = "[Service]\n# a comment\nExecStart=@VENV@/bin/gunicorn app:app\n"
    with pytest.raises(TemplateUnitError, match="line 3"):
        rewrite_unit(text, RewriteSpec(workers=3))
