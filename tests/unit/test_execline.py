"""systemd's ExecStart= command-line rules: splitting with spans, prefixes, escapes, quoting back."""

from __future__ import annotations

import pytest

from unitctl.errors import UnitSyntaxError
from unitctl.execline import ExecSyntaxError, join, quote, split


def argvs(value: str) -> list[list[str]]:
    return [c.argv for c in split(value)]


def test_quotes_mid_word_make_one_word() -> None:
    assert argvs('/usr/bin/gunicorn --bind="0.0.0.0:80" app:app') == [
        ["/usr/bin/gunicorn", "--bind=0.0.0.0:80", "app:app"]
    ]


def test_lone_semicolon_separates_and_escaped_semicolon_is_literal() -> None:
    assert argvs("/bin/true ; /bin/echo \\; x;y") == [["/bin/true"], ["/bin/echo", ";", "x;y"]]


def test_unbalanced_quote_raises_a_unit_syntax_error() -> None:
    with pytest.raises(ExecSyntaxError, match="unbalanced quoting") as info:
        split("/bin/echo 'oops")
    assert isinstance(info.value, UnitSyntaxError)


def test_word_spans_point_at_raw_text() -> None:
    value = "-/usr/bin/gunicorn  -w 4 'a b'"
    (cmd,) = split(value)
    assert cmd.prefixes == "-"
    assert [value[w.start : w.end] for w in cmd.words] == ["/usr/bin/gunicorn", "-w", "4", "'a b'"]


def test_join_round_trips_awkward_arguments() -> None:
    argv = ["/bin/echo", "a b", ";", "", 'x"y\\z', "%n", "\n", "tab\there"]
    assert split(join(argv))[0].argv == argv
    assert quote("plain") == "plain"
