"""History: one fsync'd JSON line per attempt, tolerant reading, last good / previous good, masking."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from unitctl import history, masking
from unitctl.errors import InputError
from unitctl.history import Phase, Record


def rec(outcome: history.Outcome, to_rev: str, sha: str = "u1", unit: str = "app.service") -> Record:
    return Record(
        time="2026-01-01T00:00:00Z",
        unit=unit,
        command="apply",
        outcome=outcome,
        exit_code=0,
        to_rev=to_rev,
        unit_sha256=sha,
        phases=[Phase("guard", 1.5)],
    )


def test_append_and_read_round_trip(tmp_path: Path) -> None:
    history.append(tmp_path, rec("ok", "a"))
    history.append(tmp_path, rec("rolled-back", "b"))
    history.append(tmp_path, rec("ok", "z", unit="other.service"))
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)
    got = history.read(tmp_path, "app.service")
    assert [r.to_rev for r in got] == ["a", "b"]
    assert got[0].phases == [Phase("guard", 1.5)]


def test_read_skips_a_torn_last_line(tmp_path: Path) -> None:
    history.append(tmp_path, rec("ok", "a"))
    with (tmp_path / "history.jsonl").open("a") as fh:
        fh.write('{"time": "2026')
    assert [r.to_rev for r in history.read(tmp_path)] == ["a"]
    assert history.read(tmp_path / "missing") == []


def test_last_good_and_previous_good() -> None:
    records = [rec("ok", "a"), rec("ok", "b"), rec("rolled-back", "c"), rec("ok", "b")]
    assert history.last_good(records) is records[3]
    prev = history.previous_good(records)
    assert prev is not None and prev.to_rev == "a"
    assert history.previous_good([rec("ok", "a")]) is None
    assert history.last_good([rec("refused", "a")]) is None


def test_unit_store_is_content_addressed(tmp_path: Path) -> None:
    digest = history.store_unit(tmp_path, b"[Unit]\n")
    assert history.stored_unit(tmp_path, digest) == b"[Unit]\n"
    assert history.stored_unit(tmp_path, "../../etc/passwd") is None


def test_secrets_are_masked() -> None:
    env = {"DATABASE_PASSWORD": "hunter22", "APP_MODE": "prod"}
    text = "connect failed with hunter22; API_TOKEN=abc123 url postgres://u:pw@db/x mode prod"
    masked = masking.mask(text, env)
    assert "hunter22" not in masked and "abc123" not in masked and ":pw@" not in masked
    assert "prod" in masked


@pytest.mark.parametrize("name", ["STRIPE_KEY", "SESSION_SALT", "SENTRY_DSN", "DB_PASS"])
def test_history_masks_every_name_diff_masks(name: str) -> None:
    """One rule for secret names: a value masked in 'unitctl diff' never reaches the history or the CI log."""
    assert masking.is_secret_name(name)
    text = masking.mask("worker failed with value s3cr3t-value-123 in it", {name: "s3cr3t-value-123"})
    assert "s3cr3t-value-123" not in text


def test_tracebacks_stay_readable() -> None:
    line = "KeyError: 'DATABASE_URL'"
    assert masking.mask(line) == line


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_history_and_unit_copies_are_private_whatever_the_umask(tmp_path: Path) -> None:
    hist = tmp_path / "hist"
    old = os.umask(0)
    try:
        history.append(hist, rec("ok", "a"))
        digest = history.store_unit(hist, b"[Unit]\n")
    finally:
        os.umask(old)
    assert _mode(hist) == 0o700 and _mode(hist / "history.jsonl") == 0o600
    assert _mode(hist / "units") == 0o700 and _mode(hist / "units" / digest) == 0o600


def test_existing_loose_history_is_tightened_on_the_next_write(tmp_path: Path) -> None:
    hist = tmp_path / "hist"
    (hist / "units").mkdir(parents=True)
    (hist / "history.jsonl").write_text("")
    digest = history.store_unit(hist, b"[Unit]\n")
    for path, mode in ((hist, 0o755), (hist / "units", 0o755), (hist / "history.jsonl", 0o644)):
        path.chmod(mode)
    (hist / "units" / digest).chmod(0o644)
    history.append(hist, rec("ok", "a"))
    history.store_unit(hist, b"[Unit]\n")
    assert _mode(hist) == 0o700 and _mode(hist / "history.jsonl") == 0o600
    assert _mode(hist / "units") == 0o700 and _mode(hist / "units" / digest) == 0o600


def test_a_symlinked_history_file_is_never_written_through(tmp_path: Path) -> None:
    hist = tmp_path / "hist"
    hist.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    (hist / "history.jsonl").symlink_to(victim)
    with pytest.raises(OSError):
        history.append(hist, rec("ok", "a"))
    assert victim.read_text() == "untouched\n"


def test_a_world_writable_history_dir_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(InputError, match="writable by every user"):
        history.append(shared, rec("ok", "a"))
    assert _mode(shared) == 0o777 and not (shared / "history.jsonl").exists()


def test_each_record_says_who_started_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "alice")
    monkeypatch.setenv("SSH_CLIENT", "203.0.113.7 52314 22")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    monkeypatch.setenv("GITHUB_REPOSITORY", "shop/app")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    monkeypatch.setenv("GITHUB_WORKFLOW", "deploy")
    monkeypatch.delenv("GITHUB_SERVER_URL", raising=False)
    rec = history.Record(time="2026-11-30T00:00:00Z", unit="app.service", command="apply", outcome="ok", exit_code=0)
    assert rec.trigger == {
        "user": "alice",
        "ssh_from": "203.0.113.7",
        "actor": "octocat",
        "repository": "shop/app",
        "workflow": "deploy",
        "run_url": "https://github.com/shop/app/actions/runs/42",
    }
    history.append(tmp_path, rec)
    (back,) = history.read(tmp_path, "app.service")
    assert back.trigger == rec.trigger
    assert "by octocat" in next(iter(history.iter_lines([back])))


def test_an_older_record_without_a_trigger_is_not_given_the_readers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "mallory")
    data = {"time": "t", "unit": "app.service", "command": "apply", "outcome": "ok", "exit_code": 0}
    assert history.Record.from_json(data).trigger == {}


def test_outside_github_only_the_user_is_recorded() -> None:
    assert history.current_trigger({"SUDO_USER": "bob", "GITHUB_ACTOR": "x"}) == {"user": "bob"}
