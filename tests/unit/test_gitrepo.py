"""The git edge on real temporary repositories: dirty/shallow checks, rollback targets, bytecode-safe checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unitctl.errors import GitStateError
from unitctl.gitrepo import GitRepo, purge_bytecode


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}  # fmt: skip
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
        git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "app"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    return path


def test_rollback_target_prefers_history_then_orig_head_then_reflog_then_parent(repo: Path) -> None:
    v1 = commit(repo, {"app.py": "V = 1\n"}, "v1")
    v2 = commit(repo, {"app.py": "V = 2\n"}, "v2")
    r = GitRepo(repo)
    assert r.head() == v2
    assert r.rollback_target(v1) is not None and r.rollback_target(v1).source == "history"  # type: ignore[union-attr]
    t = r.rollback_target(None)
    assert t is not None and (t.rev, t.source) == (v1, "HEAD@{1}")
    git(repo, "update-ref", "ORIG_HEAD", v1)
    t = r.rollback_target(None)
    assert t is not None and t.source == "ORIG_HEAD"
    with pytest.raises(GitStateError, match="does not have 0123456789ab"):
        r.rollback_target("0123456789abcdef0123456789abcdef01234567")


def test_rollback_target_falls_back_to_parent_without_reflog(repo: Path) -> None:
    v1 = commit(repo, {"app.py": "V = 1\n"}, "v1")
    commit(repo, {"app.py": "V = 2\n"}, "v2")
    git(repo, "reflog", "expire", "--expire=all", "--all")
    t = GitRepo(repo).rollback_target(None)
    assert t is not None and (t.rev, t.source) == (v1, "HEAD~1")


def test_dirty_tracked_files_are_refused_untracked_are_not(repo: Path) -> None:
    commit(repo, {"app.py": "V = 1\n"}, "v1")
    r = GitRepo(repo)
    (repo / "notes.txt").write_text("untracked")
    r.check_clean()
    (repo / "app.py").write_text("V = 3\n")
    with pytest.raises(GitStateError, match=r"modified tracked files \(app.py\)"):
        r.check_clean()


def test_not_a_repo_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GitStateError, match="not a git working tree"):
        GitRepo(tmp_path).check_repo()
    with pytest.raises(GitStateError, match="no such directory"):
        GitRepo(tmp_path / "nope").check_repo()


def test_shallow_clone_without_parent(repo: Path, tmp_path: Path) -> None:
    commit(repo, {"app.py": "V = 1\n"}, "v1")
    commit(repo, {"app.py": "V = 2\n"}, "v2")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth=1", f"file://{repo}", str(clone)], check=True)
    r = GitRepo(clone)
    assert r.is_shallow()
    assert r.rollback_target(None) is None or r.rollback_target(None).source != "HEAD~1"  # type: ignore[union-attr]


def test_checkout_is_detached_and_reports_changes(repo: Path) -> None:
    v1 = commit(repo, {"app.py": "V = 1\n", "README": "x"}, "v1")
    v2 = commit(repo, {"app.py": "V = 2\n"}, "v2")
    r = GitRepo(repo)
    assert r.checkout(v1) == ["app.py"]
    assert r.head() == v1 and (repo / "app.py").read_text() == "V = 1\n"
    assert r.checkout(v1) == []
    assert r.checkout(v2) == ["app.py"]
    with pytest.raises(GitStateError, match="no revision"):
        r.checkout("no-such-branch")
    assert r.resolve("--help") is None


def _import_value(repo: Path) -> str:
    code = "import sys; sys.path.insert(0, sys.argv[1]); import mod; print(mod.VALUE)"
    # Bytecode caching must be on, as it is for a service (the test environment may switch it off).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    return subprocess.run(
        [sys.executable, "-c", code, str(repo)], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def test_same_size_same_second_switch_does_not_run_stale_bytecode(repo: Path) -> None:
    good = commit(repo, {"mod.py": "VALUE = 'good'\n"}, "good")
    bad = commit(repo, {"mod.py": "VALUE = 'evil'\n"}, "same size")
    r = GitRepo(repo)
    # Import the bad release (caches its bytecode), then roll back within the same second.
    assert _import_value(repo) == "evil"
    pyc = list((repo / "__pycache__").glob("mod.*.pyc"))
    assert pyc
    mtime = int((repo / "mod.py").stat().st_mtime)
    r.checkout(good)
    # Force the exact trap: same size and the same whole-second mtime as the cached bad release.
    os.utime(repo / "mod.py", (mtime, mtime))
    assert (repo / "mod.py").stat().st_size == len("VALUE = 'evil'\n")
    assert not list((repo / "__pycache__").glob("mod.*.pyc"))
    assert _import_value(repo) == "good"
    r.checkout(bad)
    os.utime(repo / "mod.py", (mtime, mtime))
    assert _import_value(repo) == "evil"


def test_without_purge_the_trap_is_real(repo: Path) -> None:
    """The control experiment: skipping the purge really serves stale bytecode (so the test above can fail)."""
    good = commit(repo, {"mod.py": "VALUE = 'good'\n"}, "good")
    commit(repo, {"mod.py": "VALUE = 'evil'\n"}, "same size")
    assert _import_value(repo) == "evil"
    mtime = int((repo / "mod.py").stat().st_mtime)
    git(repo, "checkout", "-q", good)
    os.utime(repo / "mod.py", (mtime, mtime))
    assert _import_value(repo) == "evil"  # stale bytecode wins
    assert purge_bytecode(repo, ["mod.py"])
    assert _import_value(repo) == "good"
