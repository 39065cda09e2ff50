"""Secret masking, unified diff and colour of unitctl diff (the pure core)."""

from __future__ import annotations

import io

import pytest

from unitctl import diff
from unitctl.output import colour_enabled

UNIT = """[Service]
Environment="DB_PASSWORD=hunter2" PLAIN=visible
Environment=API_KEY=abc123
Environment='aws_secret_access_key=zzz' \\
  GITHUB_TOKEN=ghp_x OTHER=fine
Environment=DATABASE_URL=postgres://app:s3cret@db/app
# Environment=OLD_PASSWORD=kept-in-comment-lines
ExecStart=/usr/bin/gunicorn --workers 3 app:app
"""


def test_mask_replaces_secret_values_only() -> None:
    masked = diff.mask_secrets(UNIT)
    for secret in ("hunter2", "abc123", "zzz", "ghp_x", "s3cret"):
        assert secret not in masked.replace("kept-in-comment-lines", "")
    assert 'Environment="DB_PASSWORD=***" PLAIN=visible' in masked
    assert "Environment=API_KEY=***" in masked
    assert "Environment='aws_secret_access_key=***' \\\n" in masked
    assert "  GITHUB_TOKEN=*** OTHER=fine" in masked
    assert "postgres://app:***@db/app" in masked
    assert masked.endswith("ExecStart=/usr/bin/gunicorn --workers 3 app:app\n")


def test_mask_keeps_unrelated_lines_byte_for_byte() -> None:
    text = "[Service]\nExecStart=/bin/gunicorn --token-file x app:app\nDescription=KEY=value\n"
    assert diff.mask_secrets(text) == text


@pytest.mark.parametrize("name", ["PASSWORD", "db_passwd", "Secret_Key", "SLACK_TOKEN", "MY_CREDENTIALS", "PRIVATE"])
def test_secret_names(name: str) -> None:
    assert diff.is_secret_name(name)


@pytest.mark.parametrize("name", ["DJANGO_SETTINGS_MODULE", "PATH", "WEB_CONCURRENCY", "LANG"])
def test_plain_names(name: str) -> None:
    assert not diff.is_secret_name(name)


def test_compare_masks_both_sides_and_reports_difference() -> None:
    old = "[Service]\nEnvironment=TOKEN=old\nExecStart=/g -w 9 a:b\n"
    new = "[Service]\nEnvironment=TOKEN=new\nExecStart=/g -w 5 a:b\n"
    result = diff.compare(old, new, old_name="a", new_name="b")
    text = "".join(result.lines)
    assert result.differs
    assert "old" not in text.replace("--- a", "") and "new" not in text
    assert "-ExecStart=/g -w 9 a:b\n" in text and "+ExecStart=/g -w 5 a:b\n" in text


def test_secret_only_change_still_differs_without_printing_it() -> None:
    old = "[Service]\nEnvironment=SECRET_KEY=one\n"
    new = "[Service]\nEnvironment=SECRET_KEY=two\n"
    result = diff.compare(old, new, old_name="a", new_name="b")
    assert result.differs and result.secrets_only
    assert result.lines == ()
    assert result.summary == "secret values differ (masked)"


def test_identical_units() -> None:
    result = diff.compare("[Unit]\n", "[Unit]\n", old_name="a", new_name="b")
    assert not result.differs and result.lines == () and result.summary == "no changes"


def test_missing_final_newline_is_marked() -> None:
    lines = diff.unified("a\n", "a\nb", old_name="x", new_name="y")
    assert lines[-1] == "+b\n\\ No newline at end of file\n"


def test_colour_only_when_enabled() -> None:
    lines = ["--- a\n", "+++ b\n", "@@ -1 +1 @@\n", "-x\n", "+y\n", " z\n"]
    assert diff.colourize(lines, False) == lines
    coloured = diff.colourize(lines, True)
    assert coloured[3] == "\x1b[31m-x\x1b[0m\n" and coloured[4] == "\x1b[32m+y\x1b[0m\n"
    assert coloured[5] == " z\n"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_needs_a_tty_and_no_NO_COLOR() -> None:
    assert colour_enabled(_Tty(), {})
    assert not colour_enabled(_Tty(), {"NO_COLOR": "1"})
    assert not colour_enabled(io.StringIO(), {})
