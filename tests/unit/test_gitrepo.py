"""The git edge on real temporary repositories: dirty/shallow checks, rollback targets, bytecode-safe checkout."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from gitcmd import commit, git

from unitctl.errors import GitStateError
from unitctl.gitrepo import GitRepo, purge_bytecode


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
    with pytest.raises(GitStateError, match=r"modified tracked files \(app.py\): a deploy or rollback would lose them"):
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


# -- what a switch may overwrite: the dirt a service leaves, and data that would be lost ---------------


def _status(repo: Path) -> str:
    return git(repo, "status", "--porcelain", "--untracked-files=no")


def test_tracked_bytecode_the_service_regenerates_never_blocks(repo: Path) -> None:
    v1 = commit(repo, {"mod.py": "V = 1\n", "__pycache__/mod.cpython-311.pyc": "old bytecode"}, "v1")
    v2 = commit(repo, {"mod.py": "V = 2\n", "__pycache__/mod.cpython-311.pyc": "new bytecode"}, "v2")
    (repo / "__pycache__" / "mod.cpython-311.pyc").write_text("regenerated by the service")
    (repo / "other.pyc").write_text("untracked bytecode")
    r = GitRepo(repo)
    r.check_clean(v1)
    assert r.checkout(v1) == ["__pycache__/mod.cpython-311.pyc", "mod.py"]
    assert r.head() == v1 and (repo / "mod.py").read_text() == "V = 1\n"
    assert r.discarded == [], "bytecode is not reported as discarded"
    assert r.checkout(v2) and r.head() == v2


def test_a_tracked_file_the_app_rewrote_is_refused_up_front_but_never_blocks_a_rollback(repo: Path) -> None:
    v1 = commit(repo, {"app.py": "V = 1\n", "state.json": "{}\n"}, "v1")
    commit(repo, {"app.py": "V = 2\n"}, "v2")
    (repo / "state.json").write_text('{"written": "by the app"}\n')
    r = GitRepo(repo)
    with pytest.raises(GitStateError, match=r"modified tracked files \(state.json\)") as err:
        r.check_clean(v1)
    assert err.value.exit_code == 3 and "nothing was changed" in str(err.value)
    # The rollback after a failed release: what that release wrote must not stop it (it was exit 5).
    assert r.checkout(v1) == ["app.py"]
    assert r.head() == v1 and _status(repo) == "" and (repo / "state.json").read_text() == "{}\n"
    assert r.discarded == ["state.json"]


def test_a_chmod_of_a_tracked_file_is_named_and_a_rollback_restores_the_mode(repo: Path) -> None:
    v1 = commit(repo, {"run.sh": "echo hi\n", "app.py": "V = 1\n"}, "v1")
    commit(repo, {"app.py": "V = 2\n"}, "v2")
    (repo / "run.sh").chmod(0o755)
    r = GitRepo(repo)
    with pytest.raises(GitStateError, match=r"modified tracked files \(run.sh: mode changed\)"):
        r.check_clean()
    r.checkout(v1)
    assert r.head() == v1 and _status(repo) == "" and not (repo / "run.sh").stat().st_mode & 0o100


def test_an_untracked_file_the_next_release_tracks_is_refused_naming_it(repo: Path) -> None:
    commit(repo, {"app.py": "V = 1\n"}, "v1")
    v2 = commit(repo, {"app.py": "V = 2\n", "data/seed.json": "[1]\n", "conf": "x\n"}, "v2")
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    (repo / "data").mkdir()
    (repo / "data" / "seed.json").write_text("[1, 2, 3] the service's own data\n")
    (repo / "conf").mkdir()
    (repo / "conf" / "local.ini").write_text("mine\n")
    (repo / ".gitignore").write_text("ignored.txt\n")
    r = GitRepo(repo)
    r.check_clean()  # without the target, untracked files are nobody's business
    with pytest.raises(GitStateError) as err:
        r.check_clean(v2)
    msg = str(err.value)
    where = f"a directory where {v2[:12]} has a file"
    assert f"has untracked files a target revision tracks (conf/: {where}, data/seed.json): a deploy" in msg
    assert ".gitignore" not in msg


def test_after_the_old_check_clean_call_the_deploys_checkout_refuses_untracked_data(repo: Path) -> None:
    v1 = commit(repo, {"app.py": "V = 1\n"}, "v1")
    v2 = commit(repo, {"app.py": "V = 2\n", "data.csv": "a,b\n"}, "v2")
    git(repo, "checkout", "-q", "--detach", v1)
    (repo / "data.csv").write_text("the server's own\n")
    r = GitRepo(repo)
    r.check_clean()  # the engine's call without targets: the checkout that follows completes the check
    with pytest.raises(GitStateError, match=r"untracked files a target revision tracks \(data.csv\)"):
        r.checkout(v2)
    assert r.head() == v1 and (repo / "data.csv").read_text() == "the server's own\n"


def test_a_repo_named_relative_to_the_current_directory_works_the_same(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = commit(repo, {"app.py": "V = 1\n", "cache.txt": "v1\n"}, "v1")
    git(repo, "rm", "-q", "cache.txt")
    commit(repo, {"app.py": "V = 2\n"}, "v2")
    (repo / "cache.txt").write_text("mine\n")
    monkeypatch.chdir(repo.parent)
    r = GitRepo(Path(repo.name))
    r.check_repo()
    r.checkout(v1)
    assert r.head() == v1 and r.saved == ["cache.txt"]
    assert [p.read_text() for p in (repo / ".git/unitctl/saved").glob("*/cache.txt")] == ["mine\n"]


def test_a_rollback_moves_untracked_files_out_of_the_way_never_deletes_them(repo: Path) -> None:
    v1 = commit(repo, {"app.py": "V = 1\n", "cache.txt": "v1\n"}, "v1")
    git(repo, "rm", "-q", "cache.txt")
    v2 = commit(repo, {"app.py": "V = 2\n"}, "v2")
    git(repo, "checkout", "-q", "--detach", v1)
    r = GitRepo(repo)
    r.check_clean(v2)
    r.checkout(v2)
    (repo / "cache.txt").write_text("written by the failed v2\n")
    r.checkout(v1)  # the rollback: v1 tracks cache.txt
    assert r.head() == v1 and (repo / "cache.txt").read_text() == "v1\n" and _status(repo) == ""
    (saved,) = (repo / ".git/unitctl/saved").glob(f"*-{v1[:12]}/cache.txt")
    assert saved.read_text() == "written by the failed v2\n"
    assert r.saved == ["cache.txt"] and any(f"moved cache.txt out of the way of {v1[:12]}" in n for n in r.notes)


def test_an_untracked_symlink_where_the_next_release_has_a_directory_is_named_never_followed(
    repo: Path, tmp_path: Path
) -> None:
    commit(repo, {"app.py": "V = 1\n"}, "v1")
    v2 = commit(repo, {"conf/app.ini": "x\n"}, "v2")
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "app.ini").write_text("not the checkout's\n")
    (repo / "conf").symlink_to(elsewhere)
    with pytest.raises(
        GitStateError, match=rf"untracked files a target revision tracks \(conf: a symlink where {v2[:12]}"
    ):
        GitRepo(repo).check_clean(v2)
    r = GitRepo(repo)
    r.checkout(v2)  # a rollback: the symlink is moved aside, what it points to is untouched
    assert (repo / "conf").is_dir() and not (repo / "conf").is_symlink()
    assert (elsewhere / "app.ini").read_text() == "not the checkout's\n" and r.saved == ["conf"]


def test_an_ignored_file_the_next_release_tracks_is_refused_too(repo: Path) -> None:
    commit(repo, {"app.py": "V = 1\n", ".gitignore": ".env\n"}, "v1")
    v2 = commit(repo, {".env": "DEBUG=0\n"}, "v2")
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    (repo / ".env").write_text("SECRET=the server's own\n")
    with pytest.raises(GitStateError, match=r"untracked files a target revision tracks \(.env\)"):
        GitRepo(repo).check_clean(v2)


def test_what_is_already_in_the_target_or_in_head_is_not_in_the_way(repo: Path) -> None:
    commit(repo, {"app.py": "V = 1\n", "gone.py": "X = 1\n"}, "v1")
    v2 = commit(repo, {"app.py": "V = 2\n", "new.py": "N = 1\n", "__pycache__/new.cpython-311.pyc": "b"}, "v2")
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    (repo / "new.py").write_text("N = 1\n")  # the same content v2 has: nothing to lose
    (repo / "app.py").write_text("V = 2\n")  # a tracked file already at v2's content
    (repo / "gone.py").unlink()  # a deleted tracked file: HEAD still has it
    (repo / "__pycache__").mkdir()
    (repo / "__pycache__" / "new.cpython-311.pyc").write_text("regenerated")
    r = GitRepo(repo)
    r.check_clean(v2)
    r.checkout(v2)
    # The tracked bytecode of the changed new.py is purged like any other (Python rebuilds it).
    assert r.head() == v2 and _status(repo) == " D __pycache__/new.cpython-311.pyc\n"


def test_a_branch_checkout_is_left_for_a_detached_head_at_the_target(repo: Path) -> None:
    v1 = commit(repo, {"app.py": "V = 1\n"}, "v1")
    commit(repo, {"app.py": "V = 2\n"}, "v2")
    r = GitRepo(repo)
    r.checkout(v1)
    assert git(repo, "rev-parse", "main").strip() != v1, "the branch is never moved"
    assert git(repo, "symbolic-ref", "-q", "HEAD", check=False) == ""


# -- interruptions: a checkout signals cannot tear, and a torn tree the next checkout repairs ---------

BIG_FILES = 2000
CO_SCRIPT = (
    "import sys; from pathlib import Path; from unitctl.gitrepo import GitRepo; "
    "GitRepo(Path(sys.argv[1])).checkout(sys.argv[2])"
)
HOLD_SCRIPT = "import sys, time; f = open(sys.argv[1], 'w'); print('held', flush=True); time.sleep(60)"


@pytest.fixture(scope="module")
def big_origin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A repository whose two commits differ in every one of BIG_FILES files (~16 MB to write)."""
    path = tmp_path_factory.mktemp("big") / "origin"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    revs = []
    for v in (1, 2):
        for i in range(BIG_FILES):
            d = path / f"pkg{i % 40}"
            d.mkdir(exist_ok=True)
            (d / f"m{i}.py").write_text(f"V = {v}\n" + "x = 1\n" * 1300)
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"v{v}")
        revs.append(git(path, "rev-parse", "HEAD").strip())
    return path, revs[0], revs[1]


@pytest.fixture
def big(big_origin: tuple[Path, str, str], tmp_path: Path) -> tuple[Path, str, str]:
    origin, v1, v2 = big_origin
    clone = tmp_path / "big"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(origin), str(clone)], check=True)
    git(clone, "checkout", "-q", "--detach", v1)
    return clone, v1, v2


def _children(pid: int) -> list[int]:
    kids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(name))
    return kids


def _start_checkout(repo: Path, rev: str) -> subprocess.Popen[str]:
    """Run GitRepo.checkout in a child (its own process group); return once its git is writing files."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CO_SCRIPT, str(repo), rev],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, process_group=0,
    )  # fmt: skip
    _wait_until_writing(repo, proc)
    assert proc.poll() is None, f"the checkout finished before it could be interrupted: {proc.communicate()}"
    return proc


def _wait_until_writing(repo: Path, proc: subprocess.Popen[str]) -> None:
    """Return once git holds index.lock and has written the first file of v2 (git writes in path order)."""
    lock, first = repo / ".git/index.lock", repo / "pkg0" / "m0.py"
    while proc.poll() is None:
        with contextlib.suppress(OSError):
            if lock.exists() and first.read_bytes()[:5] == b"V = 2":
                return


def _torn(repo: Path, v1: str) -> bool:
    """Tell whether HEAD is still at v1 while files were already switched (git writes files, then HEAD)."""
    return git(repo, "rev-parse", "HEAD").strip() == v1 and _status(repo) != ""


def test_ctrl_c_to_the_callers_group_lets_the_checkout_finish_then_interrupts(big: tuple[Path, str, str]) -> None:
    repo, v1, v2 = big
    proc = _start_checkout(repo, v2)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, "the interrupt is delivered afterwards"
    assert git(repo, "rev-parse", "HEAD").strip() == v2 and _status(repo) == ""
    assert not (repo / ".git/index.lock").exists() and git(repo, "for-each-ref", "refs/unitctl") == ""


def test_sigterm_lets_the_checkout_finish(big: tuple[Path, str, str]) -> None:
    repo, v1, v2 = big
    proc = _start_checkout(repo, v2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGTERM
    assert git(repo, "rev-parse", "HEAD").strip() == v2 and _status(repo) == ""


def test_control_a_plain_git_checkout_is_torn_by_the_same_ctrl_c(big: tuple[Path, str, str]) -> None:
    """The control experiment: without its own session and held signals, git dies half-way."""
    repo, v1, v2 = big
    proc = subprocess.Popen(["git", "-C", str(repo), "checkout", "-q", "--detach", v2], process_group=0, text=True)
    _wait_until_writing(repo, proc)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode != 0 and _torn(repo, v1)


def test_git_killed_half_way_is_repaired_by_the_same_checkout(big: tuple[Path, str, str]) -> None:
    repo, v1, v2 = big
    proc = _start_checkout(repo, v2)
    (git_pid,) = _children(proc.pid)
    os.kill(git_pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert git(repo, "rev-parse", "HEAD").strip() == v2 and _status(repo) == ""


def test_a_tree_torn_by_kill_9_is_detected_and_repaired_by_the_next_checkout(big: tuple[Path, str, str]) -> None:
    repo, v1, v2 = big
    proc = _start_checkout(repo, v2)
    kids = _children(proc.pid)
    proc.kill()
    for pid in kids:
        os.kill(pid, signal.SIGKILL)
    proc.communicate()  # waits and closes the pipes
    assert _torn(repo, v1), "kill -9 of unitctl and git half-way leaves a torn tree"
    assert (repo / ".git/index.lock").exists()
    r = GitRepo(repo)
    r.check_repo()
    # Files the killed checkout wrote are v2's: nothing to lose, whichever way the next deploy goes.
    r.check_clean()
    r.check_clean(v1)
    assert any("an interrupted checkout: index.lock left by a killed git" in n for n in r.notes), r.notes
    r.checkout(v1)  # e.g. the rollback to the last good release
    assert r.head() == v1 and _status(repo) == ""
    assert not (repo / ".git/index.lock").exists() and git(repo, "for-each-ref", "refs/unitctl") == ""
    assert git(repo, "status", "--porcelain") == "", "no file of the interrupted v2 is left behind"


def test_a_tree_torn_by_someone_elses_git_names_the_files(big: tuple[Path, str, str]) -> None:
    repo, v1, v2 = big
    proc = subprocess.Popen(["git", "-C", str(repo), "checkout", "-q", "--detach", v2], text=True)
    _wait_until_writing(repo, proc)
    proc.kill()
    proc.wait()
    assert _torn(repo, v1) and (repo / ".git/index.lock").exists()
    torn = r"modified tracked files \(pkg0/m0.py.*: .*; an interrupted checkout: index.lock left by a killed git"
    with pytest.raises(GitStateError, match=torn):
        GitRepo(repo).check_clean()
    # Not unitctl's checkout: a human decides. A forced checkout (as a rollback does) still repairs it.
    GitRepo(repo).checkout(v2)
    assert git(repo, "rev-parse", "HEAD").strip() == v2 and _status(repo) == ""


def test_stale_locks_lists_the_lock_files_a_killed_git_left(repo: Path) -> None:
    commit(repo, {"app.py": "V = 1\n"}, "v1")
    r = GitRepo(repo)
    r.check_repo()
    assert r.stale_locks() == []
    (repo / ".git/HEAD.lock").write_text("")
    (repo / ".git/index.lock").write_text("")
    r.check_repo()  # no process holds them: not refused
    assert sorted(p.name for p in r.stale_locks()) == ["HEAD.lock", "index.lock"]


def test_a_lock_another_process_holds_is_refused(repo: Path) -> None:
    v1 = commit(repo, {"app.py": "V = 1\n"}, "v1")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(repo / ".git/index.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(GitStateError, match=rf"another git process \(pid {holder.pid}\) is working in it"):
            GitRepo(repo).check_repo()
        with pytest.raises(GitStateError, match="another git process"):
            GitRepo(repo).checkout(v1)
        assert (repo / ".git/index.lock").exists(), "a held lock is never removed"
    finally:
        holder.kill()
        holder.communicate()  # waits and closes the pipe


# -- who runs git: the checkout's owner, so nothing the repository plants runs as root -------------

OWNER = 54321  # a uid with no passwd entry: git runs with it, HOME=/nonexistent
PLANTED = ("post-checkout", "reference-transaction", "post-index-change", "fsmonitor", "smudge", "clean",
           "textconv", "external", "pager", "ssh", "credential", "askpass", "uploadpack")  # fmt: skip
# What a planted program must do besides noting its uid for git to go on (filters pass the content through).
TAILS = {"smudge": "exec cat\n", "clean": "exec cat\n", "textconv": 'cat "$1"\n', "pager": "exec cat\n",
         "uploadpack": 'exec git-upload-pack "$@"\n', "ssh": "exit 1\n"}  # fmt: skip


@pytest.fixture
def planted(tmp_path: Path) -> Iterator[tuple[Path, Path, str, str]]:
    """A checkout owned by OWNER in which that user planted every program git could run; (repo, out, v1, v2)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the checkout belongs to another user")
    # Not under pytest's 0700 base: the owner must be able to reach its checkout, as on a server.
    base = Path(tempfile.mkdtemp(prefix="unitctl-owner-"))
    base.chmod(0o755)
    try:
        origin = base / "origin"
        origin.mkdir()
        git(origin, "init", "-q", "-b", "main")
        v1 = commit(origin, {"app.py": "V = 1\n"}, "v1")
        v2 = commit(origin, {"app.py": "V = 2\n", "new.py": "N = 2\n"}, "v2")
        repo = base / "app"
        subprocess.run(["git", "clone", "-q", str(origin), str(repo)], check=True)
        git(repo, "checkout", "-q", "--detach", v1)
        out, bin_ = base / "out", base / "bin"
        out.mkdir()
        bin_.mkdir()
        for name in PLANTED:
            tail = TAILS.get(name, "exit 0\n")
            script = bin_ / name
            script.write_text(f"#!/bin/sh\nid -u > {out}/{name}\n{tail}")
            script.chmod(0o755)
        for hook in ("post-checkout", "reference-transaction", "post-index-change"):
            (repo / ".git/hooks" / hook).symlink_to(bin_ / hook)
        for key, value in {
            "core.fsmonitor": "fsmonitor", "filter.evil.smudge": "smudge", "filter.evil.clean": "clean",
            "diff.evil.textconv": "textconv", "diff.external": "external", "core.pager": "pager",
            "core.sshCommand": "ssh", "credential.helper": "credential", "core.askPass": "askpass",
            "remote.origin.uploadpack": "uploadpack",
        }.items():  # fmt: skip
            git(repo, "config", key, str(bin_ / value))
        git(repo, "remote", "add", "evil", "ssh://git@unitctl.invalid/evil.git")
        (repo / ".gitattributes").write_text("* filter=evil diff=evil\n")
        subprocess.run(["chown", "-R", f"{OWNER}:{OWNER}", str(repo), str(out), str(origin)], check=True)
        yield repo, out, v1, v2
    finally:
        shutil.rmtree(base)


def _ran(out: Path) -> dict[str, str]:
    return {p.name: p.read_text().strip() for p in out.iterdir()}


def test_programs_the_owner_planted_never_run_as_root(planted: tuple[Path, Path, str, str]) -> None:
    repo, out, v1, v2 = planted
    r = GitRepo(repo)
    r.check_repo()
    assert (r.user.uid, r.user.switch, r.user.home) == (OWNER, True, "/nonexistent")
    r.check_clean(v2)
    r.checkout(v2)
    assert r.head() == v2 and (repo / "new.py").stat().st_uid == OWNER, "files the checkout writes stay the owner's"
    r.checkout(v1)
    r.fetch("origin")
    with pytest.raises(GitStateError, match="git fetch --quiet --tags -- evil failed"):
        r.fetch("evil")
    ran = _ran(out)
    assert "0" not in ran.values(), ran
    # Hooks and fsmonitor are off; what git still runs (filters, ssh, upload-pack) runs as the owner.
    assert not {"post-checkout", "reference-transaction", "post-index-change", "fsmonitor"} & ran.keys()
    assert {"smudge", "ssh", "uploadpack"} <= ran.keys() and set(ran.values()) == {str(OWNER)}, ran

    # The control experiment: git as root with safe.directory=* (unitctl before) runs them as uid 0.
    for p in out.iterdir():
        p.unlink()
    subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(repo), "checkout", "-q", "--detach", v2], check=True
    )  # fmt: skip
    subprocess.run(["git", "-c", "safe.directory=*", "-C", str(repo), "status"], check=True, capture_output=True)
    ran = _ran(out)
    assert ran.get("post-checkout") == "0" and ran.get("fsmonitor") == "0", ran


def test_a_checkout_split_between_owners_is_refused(planted: tuple[Path, Path, str, str]) -> None:
    repo = planted[0]
    os.chown(repo / ".git", 0, 0)
    with pytest.raises(GitStateError, match=r"\.git belongs to root but the working tree .* to uid 54321"):
        GitRepo(repo).check_repo()


def test_a_root_checkout_another_user_can_configure_is_refused(repo: Path) -> None:
    commit(repo, {"app.py": "V = 1\n"}, "v1")
    if os.geteuid() != 0:
        pytest.skip("needs root: the checkout must belong to root")
    GitRepo(repo).check_repo()
    os.chown(repo / ".git/config", OWNER, -1)
    with pytest.raises(GitStateError, match=r"\.git/config can be changed by another user than root"):
        GitRepo(repo).check_repo()
    os.chown(repo / ".git/config", 0, OWNER)
    (repo / ".git/config").chmod(0o664)
    with pytest.raises(GitStateError, match=r"chown root:root .*/\.git/config and chmod go-w it"):
        GitRepo(repo).check_repo()
    (repo / ".git/config").chmod(0o644)
    GitRepo(repo).check_repo()


def test_unitctl_not_root_never_runs_git_in_another_users_checkout(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit(repo, {"app.py": "V = 1\n"}, "v1")
    assert repo.stat().st_uid != OWNER
    monkeypatch.setattr(os, "geteuid", lambda: OWNER)
    with pytest.raises(GitStateError, match=rf"unitctl runs as uid {OWNER}: git runs only as the checkout's owner"):
        GitRepo(repo).check_repo()
