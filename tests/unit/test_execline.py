"""systemd's ExecStart= command-line rules: splitting with spans, prefixes, escapes, quoting back.

Expected values below were checked against systemd 252 itself (tests/integration/test_execline_oracle.py
runs the same kinds of lines through a real systemd).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unitctl.errors import ExitCode, UnitSyntaxError
from unitctl.execline import (
    ExecSyntaxError,
    command_variables,
    join,
    quote,
    specifiers,
    split,
    split_words,
    variables,
)


def argvs(value: str) -> list[list[str]]:
    return [c.argv for c in split(value)]


def words(value: str) -> list[str]:
    (cmd,) = split(value)
    return [w.value for w in cmd.words]


# -- words, quotes, escapes ------------------------------------------------------------------------------


def test_quotes_mid_word_make_one_word() -> None:
    assert argvs('/usr/bin/gunicorn --bind="0.0.0.0:80" app:app') == [
        ["/usr/bin/gunicorn", "--bind=0.0.0.0:80", "app:app"]
    ]
    assert words('/bin/echo a"b c"d \'x\'"y"') == ["/bin/echo", "ab cd", "xy"]


def test_single_and_double_quotes_are_equivalent_and_both_process_escapes() -> None:
    assert words("/bin/echo 'a\\tb' \"a\\tb\" a\\tb") == ["/bin/echo", "a\tb", "a\tb", "a\tb"]
    assert words('/bin/echo \'it\\\'s\' "say \\"hi\\"" \'"\' "\'"') == ["/bin/echo", "it's", 'say "hi"', '"', "'"]


def test_empty_quotes_give_empty_arguments() -> None:
    assert words("/bin/echo '' \"\" x") == ["/bin/echo", "", "", "x"]


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("\\n", "\n"),
        ("\\t", "\t"),
        ("\\r", "\r"),
        ("\\a\\b\\f\\v", "\a\b\f\v"),
        ("\\\\", "\\"),
        ("\\s", " "),
        ("\\x41\\x62", "Ab"),
        ("\\101\\142", "Ab"),
        ("\\u00e9", "é"),
        ("\\U0001F600", "\U0001f600"),
        ("\\xc3\\xa9", "é"),  # bytes that form UTF-8 become text
        ("\\xff", "\udcff"),  # a lone byte stays a byte (surrogate escape)
    ],
)
def test_c_escapes(raw: str, value: str) -> None:
    assert words(f"/bin/echo {raw} '{raw}'") == ["/bin/echo", value, value]


@pytest.mark.parametrize("raw", ["\\d", "\\q", "\\x0g", "\\x00", "\\000", "\\u0000", "\\400", "\\U00110000"])
def test_unknown_or_nul_escapes_are_kept_verbatim_with_a_warning(raw: str) -> None:
    (cmd,) = split(f"/bin/echo {raw}")
    assert cmd.argv[1] == raw
    assert cmd.warnings and "unknown escape" in cmd.warnings[0]


def test_backslash_space_is_an_unknown_escape_that_keeps_the_word_together() -> None:
    assert words("/bin/echo a\\ b") == ["/bin/echo", "a\\ b"]


def test_trailing_unquoted_backslash_is_kept() -> None:
    assert words("/bin/echo x\\") == ["/bin/echo", "x\\"]


@pytest.mark.parametrize(
    "value",
    ["/bin/echo 'oops", '/bin/echo "oops', '"/bin/echo x', "/bin/echo a'b", '/bin/echo "abc\\\\\\', "/bin/echo '\\"],
)
def test_unbalanced_quotes_are_refused(value: str) -> None:
    with pytest.raises(ExecSyntaxError, match="unbalanced quoting") as info:
        split(value)
    assert isinstance(info.value, UnitSyntaxError)
    assert info.value.exit_code == ExitCode.REFUSED
    assert "\n" not in str(info.value) and "close the quote" in str(info.value)


def test_whitespace_separators_are_space_tab_cr_lf_only() -> None:
    assert words("/bin/echo a \t b\u00a0c") == ["/bin/echo", "a", "b\u00a0c"]


# -- commands and semicolons ------------------------------------------------------------------------------


def test_lone_semicolon_separates_and_escaped_semicolon_is_literal() -> None:
    assert argvs("/bin/true ; /bin/echo \\; x;y ;z") == [["/bin/true"], ["/bin/echo", ";", "x;y", ";z"]]


def test_quoted_semicolon_is_an_argument_and_double_backslash_is_not_the_escape() -> None:
    assert argvs('/bin/echo ";" \\\\;') == [["/bin/echo", ";", "\\;"]]


def test_leading_repeated_and_trailing_separators_are_ignored() -> None:
    assert argvs("; /bin/echo a ; ; /bin/true ;") == [["/bin/echo", "a"], ["/bin/true"]]


def test_empty_value_has_no_commands() -> None:
    assert split("") == []
    assert split("   ") == []


def test_command_spans_cover_first_to_last_word() -> None:
    value = "-/bin/echo a ; /bin/true  x  "
    first, second = split(value)
    assert value[first.start : first.end] == "-/bin/echo a"
    assert value[second.start : second.end] == "/bin/true  x"


# -- prefixes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "prefixes", "argv", "privileges"),
    [
        ("-/bin/true", "-", ["/bin/true"], ""),
        ("@-:/bin/echo name a", "@-:", ["name", "a"], ""),
        (":@-/bin/echo name", ":@-", ["name"], ""),
        ("+/bin/true", "+", ["/bin/true"], "+"),
        ("!/bin/true", "!", ["/bin/true"], "!"),
        ("!!/bin/true", "!!", ["/bin/true"], "!!"),
        ("-!!@/bin/echo n", "-!!@", ["n"], "!!"),
        ('"-/bin/true" x', "-", ["/bin/true", "x"], ""),  # prefixes are read after unquoting
    ],
)
def test_prefixes_in_any_order(value: str, prefixes: str, argv: list[str], privileges: str) -> None:
    (cmd,) = split(value)
    assert cmd.prefixes == prefixes
    assert cmd.argv == argv
    assert cmd.path == "/bin/" + ("echo" if "echo" in value else "true")
    assert cmd.privileges == privileges
    assert cmd.ignore_failure == ("-" in prefixes)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("+!/bin/true", "repeated or conflicting prefix '!'"),
        ("!+/bin/true", "repeated or conflicting prefix '+'"),
        ("--/bin/true", "repeated or conflicting prefix '-'"),
        ("!!!/bin/true", "repeated or conflicting prefix '!'"),
        ("- /bin/true", "empty executable"),
        ("@/bin/echo", "'@' needs argv[0]"),
        ("bin/echo x", "neither an absolute path nor a plain file name"),
        ("/bin/ x", "is a directory"),
        ("/bin/\\x5cecho", "contains quotes, backslashes or control characters"),
        ("$FOO x", "is a variable"),
        ("${FOO} x", "is a variable"),
    ],
)
def test_bad_executables_are_refused_with_one_clear_line(value: str, message: str) -> None:
    with pytest.raises(ExecSyntaxError, match="^command line .*" + re.escape(message)):
        split(value)


def test_argv0_span_starts_after_unquoted_prefixes_and_path_is_simplified() -> None:
    value = "-@/usr//bin/./gunicorn gunicorn -w 4"
    (cmd,) = split(value)
    assert value[cmd.words[0].start : cmd.words[0].end] == "/usr//bin/./gunicorn"
    assert cmd.path == "/usr/bin/gunicorn"
    assert cmd.argv == ["gunicorn", "-w", "4"]
    assert [w.value for w in cmd.args] == ["-w", "4"]
    assert cmd.start == 0


def test_argv0_span_is_the_whole_token_when_prefixes_are_inside_quotes() -> None:
    value = '"-/bin/true" x'
    (cmd,) = split(value)
    assert cmd.prefixes == "-"
    assert value[cmd.words[0].start : cmd.words[0].end] == '"-/bin/true"'


def test_plain_file_name_is_an_accepted_executable() -> None:
    assert argvs("gunicorn app:app") == [["gunicorn", "app:app"]]
    # systemd reads "--x" as prefix "-" and the plain file name "-x": valid, however odd
    (cmd,) = split("--x")
    assert (cmd.prefixes, cmd.path) == ("-", "-x")


def test_word_spans_point_at_raw_text() -> None:
    value = "/usr/bin/gunicorn  -w 4 'a b' --bind=\"x y\" \\; z"
    (cmd,) = split(value)
    assert [value[w.start : w.end] for w in cmd.words] == [
        "/usr/bin/gunicorn",
        "-w",
        "4",
        "'a b'",
        '--bind="x y"',
        "\\;",
        "z",
    ]


# -- variables and specifiers --------------------------------------------------------------------------------


def test_variables_are_kept_as_written_and_reported() -> None:
    (cmd,) = split('/bin/echo $FOO ${BAR} "${BAR}x" $$literal pre$FOO')
    assert cmd.argv == ["/bin/echo", "$FOO", "${BAR}", "${BAR}x", "$$literal", "pre$FOO"]
    found = [(i, r.name, r.braced, r.whole_word) for i, r in command_variables(cmd)]
    assert found == [
        (1, "FOO", False, True),
        (2, "BAR", True, False),
        (3, "BAR", True, False),
        (5, "FOO", False, False),
    ]
    assert variables("a$$b") == []


def test_colon_prefix_disables_variable_expansion() -> None:
    (cmd,) = split(":/bin/echo $FOO")
    assert cmd.no_env_expand
    assert command_variables(cmd) == []


def test_percent_specifiers_are_never_resolved_nor_broken() -> None:
    value = '/bin/echo 100%% %%n %n "%i" %(h)s 100%'
    (cmd,) = split(value)
    assert cmd.argv == ["/bin/echo", "100%%", "%%n", "%n", "%i", "%(h)s", "100%"]
    assert specifiers(value) == ["%n", "%i", "%(", "%"]
    assert specifiers("a %n %% %(h)s") == ["%n", "%("]


# -- quoting back --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "raw"),
    [
        ("plain", "plain"),
        ("--bind=0.0.0.0:80", "--bind=0.0.0.0:80"),
        ("%n", "%n"),
        ("$FOO", "$FOO"),
        ("a;", "a;"),
        ("", '""'),
        (";", '";"'),
        ("a b", '"a b"'),
        ("it's", '"it\'s"'),
        ('say "x"', '"say \\"x\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("line\nbreak", '"line\\nbreak"'),
        ("\x01", '"\\x01"'),
        ("\udcff", '"\\xff"'),
        ("é", "é"),
    ],
)
def test_quote_only_when_needed(arg: str, raw: str) -> None:
    assert quote(arg) == raw
    assert words(f"/bin/echo {raw}")[1] == arg


def test_quote_literal_percent_doubles_it() -> None:
    assert quote("%(h)s 100%", literal_percent=True) == '"%%(h)s 100%%"'
    assert quote("5%", literal_percent=True) == "5%%"


@pytest.mark.parametrize("arg", ["\x00", "a\x00b"])
def test_quote_refuses_nul(arg: str) -> None:
    with pytest.raises(ExecSyntaxError, match="NUL"):
        quote(arg)


def test_join_round_trips_awkward_arguments() -> None:
    argv = ["/bin/echo", "a b", ";", "", 'x"y\\z', "%n", "\n", "tab\there"]
    assert split(join(argv))[0].argv == argv
    assert join(["/usr/bin/gunicorn", "-w", "4"]) == "/usr/bin/gunicorn -w 4"
    assert join(["/bin/echo", "x"], prefixes="-") == "-/bin/echo x"


@pytest.mark.parametrize("argv", [[], [""], ["-/bin/true"], [";"], ["/bin/"], ["$X"], ["a/b"], ["/bin/echo\\"]])
def test_join_refuses_what_systemd_would_read_differently(argv: list[str]) -> None:
    with pytest.raises(ExecSyntaxError):
        join(argv)


# -- properties ----------------------------------------------------------------------------------------------

_TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=20)
_PATH_PART = st.text(st.characters(categories=("Ll", "Lu", "Nd"), include_characters="._+"), min_size=1)
_EXE = st.lists(_PATH_PART.filter(lambda p: p not in (".", "..")), min_size=1, max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)


@given(_EXE, st.lists(_TEXT, max_size=8))
def test_split_of_join_gives_back_argv(exe: str, args: list[str]) -> None:
    argv = [exe, *args]
    value = join(argv)
    (cmd,) = split(value)
    assert [w.value for w in cmd.words] == argv
    # every word's span is exactly the raw text quote() produced for it
    assert [value[w.start : w.end] for w in cmd.words] == [quote(a) for a in argv]


@given(_TEXT)
def test_quote_round_trips_any_text(arg: str) -> None:
    assert words("/bin/echo " + quote(arg))[1:] == [arg]
    assert words("/bin/echo " + quote(arg, literal_percent=True))[1:] == [arg.replace("%", "%%")]


@given(st.text(max_size=40))
def test_split_accepts_or_refuses_cleanly(value: str) -> None:
    try:
        commands = split(value)
    except ExecSyntaxError as exc:
        assert "\n" not in str(exc).replace("\\n", "")  # message stays one line (repr escapes breaks)
        return
    for cmd in commands:
        assert 0 <= cmd.start <= cmd.end <= len(value)
        for w in cmd.words:
            assert cmd.start <= w.start <= w.end <= cmd.end


# -- plain word splitting (Environment= and friends) ----------------------------------------------------------


def test_split_words_has_no_commands_nor_prefixes() -> None:
    value = '"A=1" ; -B="x y" C=\\x41'
    got = split_words(value)
    assert [w.value for w in got] == ["A=1", ";", "-B=x y", "C=A"]
    assert [value[w.start : w.end] for w in got] == ['"A=1"', ";", '-B="x y"', "C=\\x41"]


def test_split_words_strict_escapes_refuse_what_environment_ignores() -> None:
    assert [w.value for w in split_words("A=\\d")] == ["A=\\d"]
    with pytest.raises(ExecSyntaxError, match=r"^Environment= 'A=\\\\d': invalid escape sequence"):
        split_words("A=\\d", relax_escapes=False, what="Environment=")
    with pytest.raises(ExecSyntaxError, match="^Environment= .*unbalanced quoting"):
        split_words('A="x', what="Environment=")


def test_errors_can_name_the_file_and_line() -> None:
    from unitctl.unitfile import UnitFile

    entry = UnitFile.parse("[Service]\nExecStart=/bin/echo 'x\n", path="/etc/systemd/system/a.service").all_entries()[0]
    with pytest.raises(ExecSyntaxError, match=r"^/etc/systemd/system/a.service:2: command line .*unbalanced"):
        split(entry.value, where=entry.where)
    with pytest.raises(ExecSyntaxError, match=r"^a:1: Environment= "):
        split_words("A='x", what="Environment=", where="a:1")


@pytest.mark.parametrize("value", ["-/bin/echo 'oops", "/bin/true ; 'oops", "-/bin/ x"])
def test_commands_systemd_would_silently_drop_are_refused(value: str) -> None:
    with pytest.raises(ExecSyntaxError):
        split(value)


def test_environment_words_follow_systemd_quoting_with_spans() -> None:
    from unitctl.execline import environment_assignments, environment_words

    value = "\"A=x y\" B=1 'C=it\\'s' D=a\\tb E=x;y"
    words = environment_words(value)
    assert [w.value for w in words] == ["A=x y", "B=1", "C=it's", "D=a\tb", "E=x;y"]
    assert [value[w.start : w.end] for w in words][:2] == ['"A=x y"', "B=1"]
    assert environment_assignments("A=1 B C=3 =4") == [("A", "1", 0), ("C", "3", 2)]


def test_environment_words_refuse_what_systemd_ignores() -> None:
    from unitctl.execline import environment_words

    with pytest.raises(UnitSyntaxError, match="invalid escape sequence") as exc:
        environment_words("A=\\q")
    assert exc.value.exit_code == ExitCode.REFUSED


def test_command_variables_skip_the_argv0_of_an_at_prefix() -> None:
    (cmd,) = split("@/bin/echo $NAME $X")
    assert [(i, r.name) for i, r in command_variables(cmd)] == [(2, "X")]


@pytest.mark.parametrize(
    ("name", "ok"), [("A", True), ("_a1", True), ("1A", False), ("A-B", False), ("A\n", False), ("", False)]
)
def test_is_env_name(name: str, ok: bool) -> None:
    from unitctl.execline import is_env_name

    assert is_env_name(name) is ok
