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


def test_previous_good_after_a_unit_only_deploy_is_the_same_revision_with_the_old_unit() -> None:
    # A deploy that changes only the unit keeps the revision: 'unitctl rollback' must put the old unit back.
    records = [rec("ok", "a", sha="u0"), rec("ok", "b", sha="u1"), rec("ok", "b", sha="u2")]
    prev = history.previous_good(records)
    assert prev is records[1]
    assert history.previous_good([rec("ok", "b", sha="u1"), rec("ok", "b", sha="u1")]) is None


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


# -- prune ----------------------------------------------------------------------------------------------


def _digest(n: int) -> str:
    return f"{n:064x}"


@pytest.mark.parametrize("keep", [1, 2, 3, 5, 20])
@pytest.mark.parametrize(
    "outcomes",
    [
        "ok ok ok ok ok",
        "ok rolled-back refused ok refused refused",
        "ok ok refused refused refused refused",
        "ok refused refused refused refused",
        "refused refused",
        "ok ok ok",  # the same release deployed three times: previous_good is further back
    ],
)
def test_prune_keeps_the_newest_and_what_rollback_reads(keep: int, outcomes: str) -> None:
    revs = "aabcdefg" if outcomes == "ok ok ok" else "abcdefgh"
    records = [rec(o, revs[i], sha=_digest(i)) for i, o in enumerate(outcomes.split())]  # type: ignore[arg-type]
    if outcomes == "ok ok ok":
        records[1].unit_sha256 = records[0].unit_sha256
        records[2].to_rev, records[2].unit_sha256 = "a", records[0].unit_sha256
        records[0].to_rev = "z"
    flags = history.prune_selection(records, keep)
    kept = [r for r, k in zip(records, flags, strict=True) if k]
    assert flags[-keep:] == [True] * min(keep, len(records))
    assert history.last_good(kept) is history.last_good(records)
    assert history.previous_good(kept) is history.previous_good(records)
    needed = {id(history.last_good(records)), id(history.previous_good(records))}
    assert len(kept) == len({id(r) for r in records[-keep:]} | (needed - {id(None)}))


def test_prune_keep_must_be_positive() -> None:
    with pytest.raises(ValueError):
        history.prune_selection([rec("ok", "a")], 0)


def _history_with_store(tmp_path: Path) -> list[str]:
    """Six deploys of app (good, good, refused x4) and one of other, each with its own stored unit."""
    digests = []
    for i, outcome in enumerate(["ok", "ok", "refused", "refused", "refused", "refused"]):
        digest = history.store_unit(tmp_path, f"unit {i}\n".encode())
        digests.append(digest)
        history.append(tmp_path, rec(outcome, f"r{i}", sha=digest))  # type: ignore[arg-type]
    other = history.store_unit(tmp_path, b"other\n")
    history.append(tmp_path, rec("ok", "o", sha=other, unit="other.service"))
    digests.append(other)
    return digests


def test_prune_rewrites_the_history_and_the_store(tmp_path: Path) -> None:
    digests = _history_with_store(tmp_path)
    before = (tmp_path / "history.jsonl").read_bytes().splitlines(keepends=True)
    result = history.prune(tmp_path, "app.service", 2)
    # r0 (previous good) and r1 (last good) stay for rollback, r4 and r5 are the two newest: r2 and r3 go.
    assert [r.to_rev for r in result.removed] == ["r2", "r3"]
    assert result.units == sorted([digests[2], digests[3]])
    assert [r.to_rev for r in history.read(tmp_path, "app.service")] == ["r0", "r1", "r4", "r5"]
    after = (tmp_path / "history.jsonl").read_bytes().splitlines(keepends=True)
    assert after == [before[i] for i in (0, 1, 4, 5, 6)]  # byte for byte, the other unit's line included
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == sorted(digests[i] for i in (0, 1, 4, 5, 6))
    assert history.previous_good(history.read(tmp_path, "app.service")).to_rev == "r0"  # type: ignore[union-attr]
    assert _mode(tmp_path / "history.jsonl") == 0o600
    assert history.prune(tmp_path, "app.service", 2).removed == []  # nothing more to do


def test_prune_dry_run_changes_nothing(tmp_path: Path) -> None:
    _history_with_store(tmp_path)
    before = (tmp_path / "history.jsonl").read_bytes()
    units = sorted(p.name for p in (tmp_path / "units").iterdir())
    result = history.prune(tmp_path, "app.service", 1, dry_run=True)
    assert [r.to_rev for r in result.removed] == ["r2", "r3", "r4"]
    assert (tmp_path / "history.jsonl").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == units


def test_prune_keeps_unit_files_a_journal_or_another_record_names(tmp_path: Path) -> None:
    digests = _history_with_store(tmp_path)
    history.append(tmp_path, rec("refused", "x", sha=digests[2], unit="other.service"))  # shared bytes
    (tmp_path / "journal").mkdir()
    (tmp_path / "journal" / "app.service.jsonl").write_text(json.dumps({"undo": {"sha256": digests[3]}}) + "\n")
    result = history.prune(tmp_path, "app.service", 2)
    assert [r.to_rev for r in result.removed] == ["r2", "r3"]
    assert result.units == []
    assert {digests[2], digests[3]} <= {p.name for p in (tmp_path / "units").iterdir()}


def test_an_append_after_a_prune_lands_in_the_new_file(tmp_path: Path) -> None:
    _history_with_store(tmp_path)
    history.prune(tmp_path, "app.service", 1)
    history.append(tmp_path, rec("ok", "new"))
    assert history.read(tmp_path, "app.service")[-1].to_rev == "new"


def test_prune_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from unitctl.cli import app

    monkeypatch.setenv("UNITCTL_LOCK_DIR", str(tmp_path / "lock"))
    _history_with_store(tmp_path)
    base = ["history", "app", "--history-dir", str(tmp_path), "--prune", "--keep", "2"]
    dry = CliRunner().invoke(app, [*base, "--dry-run"])
    assert dry.exit_code == 1, dry.output
    assert dry.output.count("would remove: ") == 4  # two records, two unit files
    assert "app.service: would remove 2 record(s) and 2 stored unit file(s), kept 4" in dry.output
    done = CliRunner().invoke(app, base)
    assert done.exit_code == 0, done.output
    assert "app.service: removed 2 record(s) and 2 stored unit file(s), kept 4" in done.output
    assert len(history.read(tmp_path, "app.service")) == 4


def test_an_append_racing_a_prune_reopens_the_file_the_prune_renamed_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unitctl import fsutil

    _history_with_store(tmp_path)
    real_open = fsutil.open_private
    calls: list[int] = []

    def open_then_prune(path: Path, flags: int) -> int:
        fd = real_open(path, flags)
        calls.append(fd)
        if len(calls) == 1:  # the appender has the old file open; a prune replaces it before the appender's flock
            history.prune(tmp_path, "app.service", 1)
        return fd

    monkeypatch.setattr(fsutil, "open_private", open_then_prune)
    history.append(tmp_path, rec("ok", "new"))
    assert len(calls) == 3  # the appender's open, the prune's, the appender's reopen of the new file
    assert [r.to_rev for r in history.read(tmp_path, "app.service")][-1] == "new"
