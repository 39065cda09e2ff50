"""The lossless unit-file model: byte-identical round trip, systemd's reading, minimal edits, drop-ins."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from unitctl.errors import InputError, UnitSyntaxError, UsageError
from unitctl.unitfile import (
    SYSTEM_UNIT_PATH,
    Edit,
    UnitFile,
    dropin_dirs,
    dropin_paths,
    load_unit,
    merged,
    select_dropins,
    unit_from_files,
)

CORPUS = sorted((Path(__file__).parent / "corpus").rglob("*.service"))

TRICKY = (
    "\ufeff# head\n[Unit]\nDescription = x  \n\n[Service]\n"
    "ExecStart=/usr/bin/gunicorn \\\n  # inner\n    --workers 4 \\\n  --bind=x app:app\n"
    "ExecStart=\nExecStart=/bin/true\nnoeq\r\nEnvironment=A=1"
)


def parse(text: str) -> UnitFile:
    return UnitFile.parse(text)


# -- round trip ------------------------------------------------------------------------------------------


def test_round_trip_is_byte_identical() -> None:
    assert UnitFile.parse(TRICKY).serialize() == TRICKY


@pytest.mark.parametrize("path", CORPUS, ids=[f"{p.parent.name}/{p.stem}" for p in CORPUS])
def test_corpus_round_trips_as_bytes(path: Path) -> None:
    data = path.read_bytes()
    assert UnitFile.from_bytes(data, path=str(path)).to_bytes() == data


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "[Service]",
        "[Service]\r\nExecStart=/bin/true\r\n",
        "[Service]\rExecStart=/bin/true\r",
        "[Service]\n\rExecStart=/bin/true\n\r\n",
        "  \t\n\n   # indented\n\t; tab-indented\n[A]\n  Key\t =\t v  \t\n",
        "[A]\nK=a \\",
        "[A]\nK=\\\n",
        "[A]\nK=x\x00y\n",
        "\ufeff",
    ],
)
def test_odd_texts_round_trip(text: str) -> None:
    assert UnitFile.parse(text).serialize() == text


def test_bom_and_invalid_utf8_survive_bytes_round_trip() -> None:
    data = b"\xef\xbb\xbf[Unit]\nDescription=caf\xc3\xa9\nBad=\xff\xfe\n"
    u = UnitFile.from_bytes(data, path="x.service")
    assert u.has_bom
    assert u.to_bytes() == data
    assert u.get("Unit", "Description") == "café"
    assert u.get("Unit", "Bad") is None  # systemd ignores a line that is not UTF-8
    assert [str(w) for w in u.warnings] == ["x.service:3: invalid UTF-8: systemd ignores this line"]


# -- systemd's reading ----------------------------------------------------------------------------------


def test_semantic_view_joins_continuations_skips_comment_lines_and_applies_resets() -> None:
    u = UnitFile.parse(TRICKY)
    first = u.entries("Service", "ExecStart")[0]
    assert first.value == "/usr/bin/gunicorn      --workers 4    --bind=x app:app"
    assert first.line == 6
    assert u.values("Service", "ExecStart") == ["/bin/true"]
    assert u.get("Unit", "Description") == "x"
    assert [str(w) for w in u.warnings] == ["<unit text>:12: missing '=' in 'noeq': systemd ignores this line"]
    assert u.entries("Service", "Environment")[0].line == 13


@pytest.mark.parametrize(
    ("body", "value"),
    [
        ("K=a\\\\\nL=b", "a\\\\"),  # even number of backslashes: no continuation
        ("K=a\\\\\\\n b", "a\\\\  b"),  # odd: the last one becomes a space, leading whitespace kept
        ("K=a \\ \nL=b", "a \\"),  # a space after the backslash: no continuation
        ("K=a \\\n# c\n ; d\nb", "a  b"),  # comment lines inside are skipped and do not end it
        ("K=a \\\n\nL=b", "a"),  # an empty line ends it
        ("K=a \\\n   \nL=b", "a"),  # so does a blank one
        ("K=a \\", "a"),  # a trailing backslash at the end of the file is accepted
        ("K=a\\\n#c\\\nb", "a b"),  # a comment line ending in a backslash does not continue either
        ("K=a\\\r\nb\r\n", "a b"),
        ("K = \t spaced \t", "spaced"),
        ("K==x", "=x"),
        ("K=#not a comment", "#not a comment"),
    ],
)
def test_continuation_and_stripping_rules(body: str, value: str) -> None:
    assert parse("[S]\n" + body).get("S", "K") == value


def test_keys_are_case_sensitive_stripped_and_may_hold_spaces() -> None:
    u = parse("[S]\n  Foo Bar  = 1\nfoo=2\n")
    assert u.get("S", "Foo Bar") == "1"
    assert u.get("S", "foo") == "2"
    assert u.get("S", "Foo") is None


def test_duplicates_resets_and_last_wins() -> None:
    u = parse("[S]\nEnvironment=A=1\nEnvironment=B=2\nEnvironment=\nEnvironment=C=3\nUser=a\nUser=b\n")
    assert [e.value for e in u.entries("S", "Environment")] == ["A=1", "B=2", "", "C=3"]
    assert u.values("S", "Environment") == ["C=3"]
    assert u.get("S", "User") == "b"
    assert parse("[S]\nUser=a\nUser=\n").get("S", "User") == ""


def test_sections_repeat_and_entries_know_theirs() -> None:
    u = parse("[A]\nK=1\n[B]\nK=2\n[A]\nK=3\n[X-Mine]\nK=4\n")
    assert u.sections() == ["A", "B", "X-Mine"]
    assert u.values("A", "K") == ["1", "3"]
    assert [e.section for e in u.all_entries()] == ["A", "B", "A", "X-Mine"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("K=v\n[A]\n", 1, "assignment outside of any section"),
        ("[A]\nnoeq\n", 2, "missing '=' in 'noeq'"),
        ("[A]\n=v\n", 2, "missing key name before '='"),
    ],
)
def test_lines_systemd_ignores_are_kept_as_warnings(text: str, line: int, message: str) -> None:
    u = parse(text)
    assert u.serialize() == text
    (w,) = u.warnings
    assert w.line == line and message in w.message and "systemd ignores" in w.message
    assert all(e.key != "noeq" for e in u.all_entries())


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("[Unit]\n[Service\n", 2),
        ("[Service] # comment\n", 1),
        ("[Unit]\nA=1\n\n[Serv\\\nice\n", 4),
    ],
)
def test_unclosed_section_header_is_refused_with_line_number(text: str, line: int) -> None:
    with pytest.raises(UnitSyntaxError, match=rf"^u\.service:{line}: invalid section header .*must end with '\]'") as e:
        UnitFile.parse(text, path="u.service")
    assert "\n" not in str(e.value) and "close the bracket" in str(e.value)


def test_header_whitespace_is_stripped_but_inner_name_is_kept() -> None:
    u = parse("  [Service]  \nA=1\n[ Odd ]\nB=2\n")
    assert u.get("Service", "A") == "1"
    assert u.get(" Odd ", "B") == "2"


# -- minimal edits ----------------------------------------------------------------------------------------


def test_edit_inside_a_continuation_touches_only_that_span() -> None:
    u = UnitFile.parse(TRICKY)
    e = u.entries("Service", "ExecStart")[0]
    i = e.value.index("4")
    u.edit_value(e, [Edit(i, i + 1, "8")])
    assert u.serialize() == TRICKY.replace("--workers 4", "--workers 8")
    assert e.value.endswith("--workers 8    --bind=x app:app")


def test_several_edits_on_different_physical_lines() -> None:
    text = "[S]\nExecStart=/bin/g \\\n  -w 4 \\\n  # keep me\n  --bind a\n"
    u = parse(text)
    e = u.entries("S", "ExecStart")[0]
    v = e.value
    u.edit_value(e, [Edit(v.index("4"), v.index("4") + 1, "2"), Edit(v.index("a"), v.index("a") + 1, "'b c'")])
    assert u.serialize() == "[S]\nExecStart=/bin/g \\\n  -w 2 \\\n  # keep me\n  --bind 'b c'\n"


def test_deleting_across_a_line_break_joins_exactly_those_lines() -> None:
    text = "[S]\nExecStart=/bin/g -w 4 \\\n  # c\n  --bind a\nNext=1\n"
    u = parse(text)
    e = u.entries("S", "ExecStart")[0]
    start = e.value.index("-w")
    end = e.value.index("--bind")
    u.edit_value(e, [Edit(start, end, "")])
    assert u.serialize() == "[S]\nExecStart=/bin/g --bind a\nNext=1\n"
    assert e.value == "/bin/g --bind a"


def test_deleting_up_to_the_continuation_space_keeps_the_value_exact() -> None:
    u = parse("[S]\nK=a b\\\nc\n")
    e = u.entries("S", "K")[0]
    assert e.value == "a b c"
    u.edit_value(e, [Edit(2, 4, "")])  # "b " where the space is the continuation's
    assert e.value == "a c"
    assert parse(u.serialize()).get("S", "K") == "a c"


def test_insertions_at_end_start_and_into_an_empty_value() -> None:
    u = parse("[S]\nA = x  \nB=\nC=\\\n  y\n")
    a, b, c = (u.entries("S", k)[0] for k in "ABC")
    u.edit_value(a, [Edit(1, 1, " z"), Edit(0, 0, "w ")])
    u.edit_value(b, [Edit(0, 0, "new")])
    u.edit_value(c, [Edit(len(c.value), len(c.value), "!")])
    assert u.serialize() == "[S]\nA = w x z  \nB=new\nC=\\\n  y!\n"
    assert (a.value, b.value, c.value) == ("w x z", "new", "y!")


def test_set_value_keeps_spacing_line_end_and_key() -> None:
    u = parse("[S]\r\nUser = old \r\nGroup=g\r\n")
    u.set_value(u.entries("S", "User")[0], "new")
    assert u.serialize() == "[S]\r\nUser = new \r\nGroup=g\r\n"


def test_set_value_of_a_continued_value_collapses_only_its_span() -> None:
    u = parse("[S]\nK=a \\\n# c\n  b  \n")
    u.set_value(u.entries("S", "K")[0], "z")
    assert u.serialize() == "[S]\nK=z  \n"


@pytest.mark.parametrize(
    ("value", "exc"),
    [("two\nlines", UsageError), ("ends with backslash\\", UsageError), ("nul\x00", UsageError)],
)
def test_edits_that_would_not_read_back_are_refused_and_change_nothing(value: str, exc: type[Exception]) -> None:
    text = "[S]\nK=old\nL=x\n"
    u = parse(text)
    with pytest.raises(exc):
        u.set_value(u.entries("S", "K")[0], value)
    assert u.serialize() == text
    assert u.get("S", "K") == "old"


def test_overlapping_or_out_of_range_edits_are_programming_errors() -> None:
    u = parse("[S]\nK=abcdef\n")
    e = u.entries("S", "K")[0]
    with pytest.raises(ValueError):
        u.edit_value(e, [Edit(0, 3, "x"), Edit(2, 4, "y")])
    with pytest.raises(ValueError):
        u.edit_value(e, [Edit(0, 99, "x")])
    with pytest.raises(ValueError):
        parse("[S]\nK=1\n").edit_value(e, [Edit(0, 1, "x")])


def test_add_entry_after_an_entry_and_at_section_end() -> None:
    u = parse("[Unit]\nA=1\n\n[Service]\nExecStart=/bin/true\n# tail comment\n\n[Install]\nWantedBy=x\n")
    u.add_entry("Unit", "B", "2", after=u.entries("Unit", "A")[0])
    new = u.add_entry("Service", "Restart", "always")
    assert new.value == "always" and new.section == "Service"
    assert u.serialize() == (
        "[Unit]\nA=1\nB=2\n\n[Service]\nExecStart=/bin/true\nRestart=always\n# tail comment\n\n[Install]\nWantedBy=x\n"
    )
    assert new.line == 7
    u.set_value(new, "on-failure")
    assert "Restart=on-failure\n" in u.serialize()


def test_add_entry_creates_a_missing_section_and_fixes_a_missing_final_newline() -> None:
    u = parse("[Unit]\r\nA=1")
    u.add_entry("Service", "User", "app")
    assert u.serialize() == "[Unit]\r\nA=1\r\n\r\n[Service]\r\nUser=app\r\n"
    assert parse("").add_entry("S", "K", "v").value == "v"


@pytest.mark.parametrize("key", ["", " K", "K=", "#K", "[K", "K\nL"])
def test_add_entry_refuses_bad_keys(key: str) -> None:
    u = parse("[S]\n")
    with pytest.raises(UsageError):
        u.add_entry("S", key, "v")
    assert u.serialize() == "[S]\n"


def test_remove_entry_removes_all_its_lines_and_nothing_else() -> None:
    text = "[S]\nA=1\nK=a \\\n  # inner\n  b\nB=2\n"
    u = parse(text)
    u.remove_entry(u.entries("S", "K")[0])
    assert u.serialize() == "[S]\nA=1\nB=2\n"
    assert u.entries("S", "B")[0].line == 3


def test_edits_reparse_identically() -> None:
    u = parse(TRICKY)
    e = u.entries("Service", "ExecStart")[0]
    u.edit_value(e, [Edit(0, len("/usr/bin/gunicorn"), "/opt/venv/bin/gunicorn")])
    u.add_entry("Service", "Restart", "always")
    again = UnitFile.parse(u.serialize())
    assert [(x.section, x.key, x.value, x.line) for x in again.all_entries()] == [
        (x.section, x.key, x.value, x.line) for x in u.all_entries()
    ]


# -- drop-ins --------------------------------------------------------------------------------------------


def test_merged_applies_dropins_in_order_with_resets() -> None:
    main = UnitFile.parse("[Service]\nExecStart=/bin/a\nUser=x\nEnvironment=A=1\n", path="/usr/lib/u.service")
    d1 = UnitFile.parse("[Service]\nExecStart=\nExecStart=/bin/b\n", path="/etc/u.service.d/10.conf")
    d2 = UnitFile.parse("[Service]\nUser=y\nEnvironment=B=2\n", path="/etc/u.service.d/20.conf")
    m = merged(main, [d1, d2])
    assert m.values("Service", "ExecStart") == ["/bin/b"]
    assert m.get("Service", "User") == "y"
    assert m.values("Service", "Environment") == ["A=1", "B=2"]
    assert m.entries("Service", "User")[-1].path == "/etc/u.service.d/20.conf"
    assert m.get("Service", "Nope") is None
    assert m.sections() == ["Service"]
    user = m.entries("Service", "User")[-1]
    m.owner(user).set_value(user, "z")
    assert d2.serialize() == "[Service]\nUser=z\nEnvironment=B=2\n"
    with pytest.raises(ValueError):
        m.owner(UnitFile.parse("[S]\nK=v\n").all_entries()[0])


def test_dropin_dirs_follow_systemd_order() -> None:
    assert dropin_dirs("foo-bar-baz.service", ["/etc", "/usr/lib"]) == [
        "/etc/foo-bar-baz.service.d",
        "/etc/foo-bar-.service.d",
        "/etc/foo-.service.d",
        "/usr/lib/foo-bar-baz.service.d",
        "/usr/lib/foo-bar-.service.d",
        "/usr/lib/foo-.service.d",
        "/etc/service.d",
        "/usr/lib/service.d",
    ]
    assert dropin_dirs("app-web@blue.service", ["/etc"]) == [
        "/etc/app-web@blue.service.d",
        "/etc/app-web@.service.d",
        "/etc/app-.service.d",  # the template's own prefix walk (systemd recurses on the template name)
        "/etc/app-@blue.service.d",
        "/etc/app-@.service.d",
        "/etc/service.d",
    ]
    # a trailing dash is chopped once; a leading dash ends the walk
    assert dropin_dirs("a-b-.socket", ["/x"]) == ["/x/a-b-.socket.d", "/x/a-.socket.d", "/x/socket.d"]
    assert dropin_dirs("-a.service", ["/x"]) == ["/x/-a.service.d", "/x/service.d"]


def test_select_dropins_earlier_dir_wins_per_file_name_then_sorted_by_name() -> None:
    dirs = dropin_dirs("app.service", ["/etc/systemd/system", "/usr/lib/systemd/system"])
    files = [
        "/usr/lib/systemd/system/app.service.d/10-a.conf",
        "/usr/lib/systemd/system/app.service.d/50-same.conf",
        "/etc/systemd/system/app.service.d/50-same.conf",
        "/etc/systemd/system/service.d/05-all.conf",
        "/etc/systemd/system/app.service.d/notes.txt",
        "/etc/systemd/system/app.service.d/.hidden.conf",
        "/etc/systemd/system/other.service.d/00.conf",
    ]
    assert select_dropins(dirs, files) == [
        "/etc/systemd/system/service.d/05-all.conf",
        "/usr/lib/systemd/system/app.service.d/10-a.conf",
        "/etc/systemd/system/app.service.d/50-same.conf",
    ]
    assert dropin_paths("app.service", ["/etc/systemd/system", "/usr/lib/systemd/system"], files=files) == (
        select_dropins(dirs, files)
    )


def test_unit_from_files_is_pure_and_uses_the_template_for_instances() -> None:
    files = {
        "/usr/lib/systemd/system/web@.service": "[Service]\nExecStart=/bin/web %i\n",
        "/etc/systemd/system/web@blue.service.d/10.conf": "[Service]\nUser=blue\n",
        "/etc/systemd/system/web@.service.d/05.conf": "[Service]\nUser=tpl\nGroup=g\n",
    }
    m = unit_from_files("web@blue.service", files)
    assert m.main.path == "/usr/lib/systemd/system/web@.service"
    assert [f.path for f in m.dropins] == [
        "/etc/systemd/system/web@.service.d/05.conf",
        "/etc/systemd/system/web@blue.service.d/10.conf",
    ]
    assert (m.get("Service", "User"), m.get("Service", "Group")) == ("blue", "g")


def test_unit_from_files_refuses_missing_masked_and_bad_names() -> None:
    with pytest.raises(InputError, match="has no unit file"):
        unit_from_files("nope.service", {})
    with pytest.raises(InputError, match="masked"):
        unit_from_files("m.service", {"/etc/systemd/system/m.service": ""})
    for bad in ("noname", "../../etc/passwd.service", "a b.service", "app.conf"):
        with pytest.raises(UsageError, match="not a valid systemd unit name"):
            unit_from_files(bad, {})


def test_load_unit_reads_under_a_root(tmp_path: Path) -> None:
    etc = tmp_path / "etc/systemd/system"
    lib = tmp_path / "usr/lib/systemd/system"
    (etc / "app.service.d").mkdir(parents=True)
    (lib / "app.service.d").mkdir(parents=True)
    (lib / "app.service").write_text("[Service]\nExecStart=/bin/a\n")
    (lib / "app.service.d/20.conf").write_text("[Service]\nExecStart=\nExecStart=/bin/lib\n")
    (etc / "app.service.d/20.conf").write_text("[Service]\nExecStart=\nExecStart=/bin/etc\n")
    (etc / "app.service.d/30-masked.conf").symlink_to("/dev/null")
    (lib / "app.service.d/30-masked.conf").write_text("[Service]\nUser=never\n")
    m = load_unit("app.service", root=tmp_path)
    assert m.values("Service", "ExecStart") == ["/bin/etc"]
    assert m.get("Service", "User") is None
    assert [f.path for f in m.files] == [
        "/usr/lib/systemd/system/app.service",
        "/etc/systemd/system/app.service.d/20.conf",
        "/etc/systemd/system/app.service.d/30-masked.conf",
    ]
    (etc / "app.service").symlink_to("/dev/null")
    with pytest.raises(InputError, match="masked"):
        load_unit("app.service", root=tmp_path)
    assert SYSTEM_UNIT_PATH.index("/etc/systemd/system") < SYSTEM_UNIT_PATH.index("/usr/lib/systemd/system")


# -- properties ---------------------------------------------------------------------------------------------

_EOL = st.sampled_from(["\n", "\r\n", "\r", "\n\r"])
_WS = st.text(" \t", max_size=3)
_VALUE = st.text(st.characters(exclude_characters="\r\n\x00", exclude_categories=["Cs"]), max_size=15)
_KEY_CHARS = st.characters(categories=("Lu", "Ll", "Nd"), include_characters="-_ ")
_KEY = st.text(_KEY_CHARS, min_size=1, max_size=8)
_LINE = st.one_of(
    st.builds(lambda w, n, t: f"{w}[{n}]{t}", _WS, _KEY, _WS),
    st.builds(lambda w, c, v: w + c + v, _WS, st.sampled_from("#;"), _VALUE),
    _WS,
    st.builds(lambda w1, k, w2, w3, v: f"{w1}{k}{w2}={w3}{v}", _WS, _KEY, _WS, _WS, _VALUE),
    # raw text ending in backslashes (never a '[' line, so no header systemd would refuse is generated)
    st.builds(
        lambda v, b: v + b,
        _VALUE.filter(lambda v: not v.lstrip(" \t").startswith("[")),
        st.sampled_from(["\\", "\\\\", "\\\\\\", "\\ "]),
    ),
)


@st.composite
def unit_texts(draw: st.DrawFn, *, header_first: bool = False) -> str:
    lines = draw(st.lists(_LINE, max_size=25))
    if header_first:
        lines.insert(0, "[Service]")
    eols = draw(st.lists(_EOL, min_size=len(lines), max_size=len(lines)))
    text = "".join(line + eol for line, eol in zip(lines, eols, strict=True))
    if len(lines) > 0 and draw(st.booleans()):
        text = text[: -len(eols[-1])]  # no final newline
    return ("\ufeff" if draw(st.booleans()) else "") + text


@given(unit_texts())
def test_any_unit_text_round_trips_byte_identical(text: str) -> None:
    u = UnitFile.parse(text)
    assert u.serialize() == text
    assert UnitFile.from_bytes(text.encode()).to_bytes() == text.encode()


@given(unit_texts(header_first=True), st.data())
def test_any_edit_keeps_the_file_consistent(text: str, data: st.DataObject) -> None:
    u = UnitFile.parse(text)
    entries = u.all_entries()
    assume(entries)
    e = data.draw(st.sampled_from(entries))
    start = data.draw(st.integers(0, len(e.value)))
    end = data.draw(st.integers(start, len(e.value)))
    repl = data.draw(_VALUE)
    before = u.serialize()
    old = e.value
    try:
        u.edit_value(e, [Edit(start, end, repl)])
    except UsageError:
        assert u.serialize() == before
        return
    assert e.value == (old[:start] + repl + old[end:]).strip(" \t\n\r")
    again = UnitFile.parse(u.serialize())
    assert [(x.section, x.key, x.value) for x in again.all_entries()] == [
        (x.section, x.key, x.value) for x in u.all_entries()
    ]


def test_add_entry_after_an_entry_of_another_section_is_a_programming_error() -> None:
    u = parse("[A]\nK=1\n[B]\n")
    with pytest.raises(ValueError):
        u.add_entry("B", "L", "2", after=u.entries("A", "K")[0])
    assert u.serialize() == "[A]\nK=1\n[B]\n"


def test_dependencies_cannot_be_reset_but_other_lists_can() -> None:
    u = parse("[Unit]\nAfter=a.target\nAfter=\nAfter=b.target\nDocumentation=man:a(1)\nDocumentation=\n")
    assert u.values("Unit", "After") == ["a.target", "b.target"]
    assert u.values("Unit", "Documentation") == []
    assert parse("[Service]\nAfter=x\nAfter=\n").values("Service", "After") == []  # only [Unit] dependencies


def test_dropin_paths_lists_the_disk_under_root(tmp_path: Path) -> None:
    for rel in (
        "etc/systemd/system/app-web.service.d/20.conf",
        "usr/lib/systemd/system/app-.service.d/10.conf",
        "usr/lib/systemd/system/app-.service.d/20.conf",
        "usr/lib/systemd/system/app-web.service.d/readme.txt",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("[Service]\n")
    assert dropin_paths("app-web.service", root=tmp_path) == [
        "/usr/lib/systemd/system/app-.service.d/10.conf",
        "/etc/systemd/system/app-web.service.d/20.conf",
    ]


def test_a_unit_name_may_be_255_characters_not_256() -> None:
    # systemd's UNIT_NAME_MAX is 256 bytes with the terminating NUL: 255 characters is the longest name it loads.
    longest = "a" * (255 - len(".service")) + ".service"
    assert dropin_dirs(longest)
    with pytest.raises(UsageError, match="not a valid systemd unit name"):
        dropin_dirs("a" + longest)


@pytest.mark.parametrize("text", ["[Service]", "[Service]\r\n"])
def test_an_entry_added_after_a_header_starts_a_line_of_its_own(text: str) -> None:
    uf = UnitFile.parse(text)
    uf.add_entry("Service", "User", "app")
    eol = "\r\n" if text.endswith("\r\n") else "\n"
    assert uf.serialize() == f"[Service]{eol}User=app{eol}"
