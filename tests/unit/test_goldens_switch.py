"""The golden-file switch: regeneration is refused under CI and a kind change needs asking for."""

from __future__ import annotations

from pathlib import Path

import pytest
from goldens import NEW, regen_mode, regenerate


def test_unset_means_the_goldens_are_the_oracle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNITCTL_REGEN_GOLDEN", raising=False)
    assert regen_mode() is None


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_regeneration_is_refused_under_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("UNITCTL_REGEN_GOLDEN", "1")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="refused under CI"):
        regen_mode()


def test_an_unknown_value_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNITCTL_REGEN_GOLDEN", "yes")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.fail.Exception, match="use 1"):
        regen_mode()


def test_a_kind_change_fails_unless_asked_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CI", raising=False)
    (tmp_path / "expected_error.txt").write_text("RefusedError: no\n")
    files = {"expected.service": "[Service]\n", "expected_error.txt": None}
    monkeypatch.setenv("UNITCTL_REGEN_GOLDEN", "1")
    with pytest.raises(pytest.fail.Exception, match="UNITCTL_REGEN_GOLDEN=kind"):
        regenerate(tmp_path, files, kind_before="refusal", kind_after="rewrite")
    assert (tmp_path / "expected_error.txt").exists() and not (tmp_path / "expected.service").exists()
    monkeypatch.setenv("UNITCTL_REGEN_GOLDEN", "kind")
    regenerate(tmp_path, files, kind_before="refusal", kind_after="rewrite")
    assert (tmp_path / "expected.service").read_text() == "[Service]\n"
    assert not (tmp_path / "expected_error.txt").exists()


def test_same_kind_regenerates_with_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("UNITCTL_REGEN_GOLDEN", "1")
    regenerate(tmp_path, {"expected.service": "new\n"}, kind_before="rewrite", kind_after="rewrite")
    assert (tmp_path / "expected.service").read_text() == "new\n"


def test_a_new_case_is_written_whatever_its_kind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("UNITCTL_REGEN_GOLDEN", "1")
    regenerate(tmp_path, {"expected_error.txt": "RefusedError: no\n"}, kind_before=NEW, kind_after="refusal")
    assert (tmp_path / "expected_error.txt").read_text() == "RefusedError: no\n"
