"""The lossless unit-file model: byte-identical round trip, systemd's reading, minimal edits."""

from __future__ import annotations

import pytest

from unitctl.errors import UnitSyntaxError
from unitctl.unitfile import Edit, UnitFile

TRICKY = (
    "\ufeff# head\n[Unit]\nDescription = x  \n\n[Service]\n"
    "ExecStart=/usr/bin/gunicorn \\\n  # inner\n    --workers 4 \\\n  --bind=x app:app\n"
    "ExecStart=\nExecStart=/bin/true\nnoeq\r\nEnvironment=A=1"
)


def test_round_trip_is_byte_identical() -> None:
    assert UnitFile.parse(TRICKY).serialize() == TRICKY


def test_semantic_view_joins_continuations_skips_comment_lines_and_applies_resets() -> None:
    u = UnitFile.parse(TRICKY)
    first = u.entries("Service", "ExecStart")[0]
    assert first.value == "/usr/bin/gunicorn      --workers 4    --bind=x app:app"
    assert u.values("Service", "ExecStart") == ["/bin/true"]
    assert u.get("Unit", "Description") == "x"
    assert [str(w) for w in u.warnings] == ["<unit>:12: missing '=' in 'noeq': systemd ignores this line"]


def test_edit_inside_a_continuation_touches_only_that_span() -> None:
    u = UnitFile.parse(TRICKY)
    e = u.entries("Service", "ExecStart")[0]
    i = e.value.index("4")
    u.edit_value(e, [Edit(i, i + 1, "8")])
    assert u.serialize() == TRICKY.replace("--workers 4", "--workers 8")


def test_unclosed_section_header_is_refused_with_line_number() -> None:
    with pytest.raises(UnitSyntaxError, match=r"^u.service:2: invalid section header '\[Service'"):
        UnitFile.parse("[Unit]\n[Service\n", path="u.service")
