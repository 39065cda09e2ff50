"""The git edge: run git as the checkout's owner, refuse what a switch would lose, switch revisions robustly.

Who runs git (SECURITY.md, "Git and the checkout"): git runs as the owner of the checkout. When unitctl
is root and the checkout belongs to the service user, every git command runs as that user (uid, gid,
groups, HOME), so nothing the repository configures (hooks, fsmonitor, filter drivers, textconv,
sshCommand, credential helpers, uploadpack...) can ever run as root. A root-owned checkout runs as root
only when no other user can write its git directory or config. There is no ``safe.directory`` override:
git's own ownership check holds because git runs as the owner. Hooks and fsmonitor are switched off for
every command on top of that: a checkout by unitctl is a plain file operation.

What a switch may overwrite: the checkout belongs to unitctl. A checkout is forced, so the files the
service regenerates (bytecode) or a failed release wrote never block a rollback; untracked files in a
checkout's way are moved into ``.git/unitctl/saved/``, never deleted. What would be lost for good
(local edits, mode changes, untracked files a target revision tracks) is refused up front by
``check_clean`` with the files named. A modification whose content is identical to a revision the tree
is being switched to (a checkout interrupted half-way) is not data and does not block.

Interruptions: a checkout runs with SIGINT/SIGTERM/SIGHUP held and git in its own session, so a Ctrl-C
or a SIGTERM to unitctl lets it finish; the signal arrives afterwards. Before git starts, the target is
recorded in ``refs/unitctl/checkout-target``; a checkout killed anyway (kill -9 of git) leaves that ref
and a stale ``index.lock``, and the next checkout removes the lock (when no process holds it), forces
the tree to its revision and checks the real status, never HEAD alone.

Bytecode safety: Python trusts ``__pycache__/<mod>.cpython-XY.pyc`` when the source's mtime (whole
seconds) and size match what the .pyc recorded. A checkout that swaps a file for one of the same size
within the same second would leave the other release's bytecode in force. After every checkout the
cached bytecode of every file that changed between the two revisions is deleted, so the next import
compiles from the source that is actually on disk.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import stat
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from unitctl.errors import GitStateError, InputError

GIT_TIMEOUT = 120.0
FETCH_TIMEOUT = 600.0
# Set before a checkout starts, deleted when the tree is verified at the target: present = interrupted.
CHECKOUT_REF = "refs/unitctl/checkout-target"
# Lock files a killed checkout can leave in the git directory.
_LOCK_FILES = ("index.lock", "HEAD.lock")
_HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_SHOWN = 5
# Config every git command gets: no repository-controlled program runs during a status or a checkout.
_OVERRIDES = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.pager", "cat"),
    ("advice.detachedHead", "false"),
)


@dataclass(frozen=True)
class RollbackTarget:
    """The revision to return to and where it came from."""

    rev: str
    source: str  # "history", "ORIG_HEAD", "HEAD@{1}", "HEAD~1"


@dataclass(frozen=True)
class GitUser:
    """The account git runs as for one checkout: its owner."""

    uid: int
    gid: int
    name: str  # the login name, or "uid N" without a passwd entry
    home: str
    groups: tuple[int, ...]
    switch: bool  # unitctl is root and the checkout is not: git runs with this uid/gid


@dataclass(frozen=True)
class AtRisk:
    """A file a forced switch would lose, and why."""

    path: str
    tracked: bool  # a change to a tracked file, else an untracked file in a target's way
    why: str = ""  # "mode changed", "deleted", "added", "a file where 0123abcd has a directory"...; "" = modified

    def __str__(self) -> str:
        return f"{self.path}: {self.why}" if self.why else self.path


class GitRepo:
    """A working tree driven through the ``git`` command line (argv only, never a shell), as its owner."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._user: GitUser | None = None
        # What check_repo/check_clean found and unitctl will repair (an interrupted checkout); for the caller to show.
        self.notes: list[str] = []
        # Tracked files the last checkout overwrote although they had changes (a failed release's writes).
        self.discarded: list[str] = []
        # Untracked files checkouts moved out of a target's way (into the git directory), never deleted.
        self.saved: list[str] = []
        # (HEAD, revisions cleared) when check_clean() last passed: the next checkout completes that check.
        self._checked: tuple[str | None, set[str]] | None = None

    # -- running git -----------------------------------------------------------------------------

    @property
    def user(self) -> GitUser:
        """Return the account git runs as (the checkout's owner); refuse a checkout no safe account can run."""
        if self._user is None:
            self._user = owner_of(self.path)
        return self._user

    def _git(
        self, *args: str, check: bool = True, timeout: float = GIT_TIMEOUT, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self._run(["git", *args], check=check, timeout=timeout, input=input)

    def _run(
        self, argv: list[str], *, check: bool = True, timeout: float = GIT_TIMEOUT, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the checkout as its owner, in its own session; GitStateError if it fails."""
        user = self.user
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                env=git_env(user),
                cwd=self.path,
                # Its own session: a Ctrl-C to unitctl's process group never reaches git half-way through.
                start_new_session=True,
                user=user.uid if user.switch else None,
                group=user.gid if user.switch else None,
                extra_groups=list(user.groups) if user.switch else None,
            )
        except FileNotFoundError as exc:
            package = "git" if argv[0] == "git" else "coreutils"
            raise InputError(f"{argv[0]} is not installed", hint=f"install it (apt-get install {package})") from exc
        except subprocess.TimeoutExpired as exc:
            raise GitStateError(f"{' '.join(argv)} in {self.path} did not finish in {timeout:g}s") from exc
        if check and proc.returncode != 0:
            raise GitStateError(
                f"{' '.join(argv)} failed in {self.path} (as {user.name}): "
                f"{_one_line((proc.stderr or proc.stdout).strip())[-300:]}",
                hint="check the repository",
            )
        return proc

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _z(self, *args: str) -> list[str]:
        """Run git with NUL-separated output; return the non-empty fields."""
        return [p for p in self._git(*args).stdout.split("\0") if p]

    # -- state -----------------------------------------------------------------------------------

    def check_repo(self) -> None:
        """Raise GitStateError unless ``path`` is the top of a git working tree unitctl can drive safely."""
        if not self.path.is_dir():
            raise GitStateError(f"{self.path}: no such directory", hint="pass the app's checkout with --repo")
        if not (self.path / ".git").exists():
            raise GitStateError(
                f"{self.path} is not a git working tree (no .git in it)",
                hint="pass the top directory of the app's checkout with --repo",
            )
        _ = self.user
        proc = self._git("rev-parse", "--show-toplevel", check=False)
        if proc.returncode != 0:
            raise GitStateError(
                f"{self.path} is not a git working tree: {_one_line(proc.stderr.strip())[-200:]}",
                hint="pass the app's checkout with --repo",
            )
        self._check_locks()

    def head(self) -> str:
        """Return the full hash of HEAD."""
        return self._git("rev-parse", "--verify", "HEAD^{commit}").stdout.strip()

    def resolve(self, rev: str) -> str | None:
        """Return the full commit hash ``rev`` names, or None when the repository does not have it."""
        if rev.startswith("-"):
            return None
        proc = self._git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}", check=False)
        return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None

    def is_shallow(self) -> bool:
        return self._git("rev-parse", "--is-shallow-repository").stdout.strip() == "true"

    def dirty_files(self) -> list[str]:
        """Return tracked files with changes (staged or not); untracked files do not count."""
        out = self._git("status", "--porcelain", "--untracked-files=no", "--ignore-submodules=none").stdout
        return [line[3:] for line in out.splitlines() if line.strip()]

    def interrupted_target(self) -> str | None:
        """Return the revision an interrupted checkout by unitctl was switching to, if one was."""
        return self.resolve(CHECKOUT_REF)

    def at_risk(self, *targets: str | None) -> list[AtRisk]:
        """Return what switching to any of ``targets`` (forced) would lose; regenerable bytecode never counts."""
        revs = [sha for sha in (self.resolve(t) for t in targets if t) if sha]
        interrupted = self.interrupted_target()
        # Content identical to a revision being switched to (or to an interrupted checkout's) is not lost.
        same_as = [*revs, *([interrupted] if interrupted else [])]
        # A deleted tracked file is not lost: HEAD has it, and any switch brings back what its revision has.
        risks = [r for r in self._local_changes() if not regenerable(r.path) and r.why != "deleted"]
        for rev in same_as:
            if not risks:
                break
            differ = set(self._z("diff", "--no-renames", "--name-only", "-z", rev, "--"))
            risks = [r for r in risks if r.path in differ]
        seen = {r.path for r in risks}
        for rev in revs:
            risks.extend(r for r in self._untracked_in_the_way(rev, same_as) if r.path not in seen)
            seen.update(r.path for r in risks)
        return self._not_ours(risks, interrupted)

    def _not_ours(self, risks: list[AtRisk], interrupted: str | None) -> list[AtRisk]:
        """Drop the paths unitctl's interrupted (forced) checkout was writing: they are its own, whatever state
        git was killed in (a file killed mid-write matches no revision)."""
        if not interrupted or not risks:
            return risks
        ours = set(self.changed_files(self.head(), interrupted))
        return [r for r in risks if r.path.rstrip("/") not in ours]

    def check_clean(self, *targets: str | None) -> None:
        """Refuse local changes a forced switch to ``targets`` (or back) would lose, naming the files (exit 3).

        Bytecode the service regenerates is never in the way. Untracked files are checked against the
        revisions given; without any (the old call), the next ``checkout`` (the deploy's switch) checks
        its own target before it changes anything. Later checkouts (rollbacks) never refuse: they move
        untracked files out of the way into the git directory instead.
        """
        risks = self.at_risk(*targets)
        torn = self._torn()
        if torn and not risks:
            self._note(f"{torn}: the next checkout removes the stale lock and forces the tree to its revision")
        if risks:
            raise self._refusal(risks, torn)
        cleared = {sha for sha in (self.resolve(t) for t in targets if t) if sha}
        self._checked = (self.resolve("HEAD"), cleared)

    def _refusal(self, risks: Sequence[AtRisk], torn: str = "") -> GitStateError:
        shown = risks[:_SHOWN]
        parts = []
        for tracked, what in ((True, "modified tracked files"), (False, "untracked files a target revision tracks")):
            names = [str(r) for r in shown if r.tracked == tracked]
            if names:
                parts.append(f"{what} ({', '.join(names)})")
        more = f" and {len(risks) - _SHOWN} more" if len(risks) > _SHOWN else ""
        also = f"; {torn}" if torn else ""
        return GitStateError(
            f"{self.path} has {' and '.join(parts)}{more}: a deploy or rollback would lose them{also}",
            hint="commit, move or discard them (bytecode is ignored), then retry; nothing was changed",
        )

    def _local_changes(self) -> list[AtRisk]:
        """Return tracked files that differ from HEAD (content, mode, deleted, staged additions)."""
        raw = self._z("diff", "HEAD", "--no-renames", "--ignore-submodules=all", "--raw", "-z")
        numstat = self._z("diff", "HEAD", "--no-renames", "--ignore-submodules=all", "--numstat", "-z")
        unchanged_text = {f.split("\t", 2)[2] for f in numstat if f.startswith("0\t0\t")}
        changes: list[AtRisk] = []
        for meta, path in zip(raw[0::2], raw[1::2], strict=False):
            old_mode, new_mode, _, _, status = meta.lstrip(":").split(" ")[:5]
            if status.startswith("D"):
                why = "deleted"
            elif status.startswith("A"):
                why = "added"
            elif old_mode != new_mode and path in unchanged_text:
                why = "mode changed"
            else:
                why = ""
            changes.append(AtRisk(path, tracked=True, why=why))
        return changes

    def _tree(self, rev: str) -> dict[str, str]:
        """Return ``rev``'s files: path -> blob hash (symlinks and gitlinks included)."""
        entries: dict[str, str] = {}
        for field in self._z("ls-tree", "-r", "-z", "--full-tree", rev):
            meta, _, path = field.partition("\t")
            entries[path] = meta.split(" ")[2]
        return entries

    def _hashes(self, paths: Sequence[str]) -> dict[str, str]:
        """Return the blob hash each file would get (the checkout's own filters, run as the owner)."""
        if not paths:
            return {}
        out = self._git("hash-object", "--stdin-paths", input="".join(p + "\n" for p in paths)).stdout.split()
        return dict(zip(paths, out, strict=False))

    def _untracked_in_the_way(self, rev: str, same_as: Sequence[str]) -> list[AtRisk]:
        """Return files on disk, not tracked now, that ``rev`` would overwrite or that block it.

        A file whose content is what ``rev`` (or a revision in ``same_as``) has at that path is not in the way.
        """
        tracked_now = set(self._z("ls-files", "-z"))
        entries = self._tree(rev)
        dirs_now = {str(d) for p in tracked_now for d in PurePosixPath(p).parents}
        risks: list[AtRisk] = []
        files: list[str] = []
        blocked: set[str] = set()
        for p in (p for p in entries if p not in tracked_now):
            if self._parent_in_the_way(p, rev, tracked_now | dirs_now, blocked, risks):
                continue
            full = self.path / p
            if not _lexists(full) or regenerable(p):
                continue
            if full.is_symlink():
                risks.append(AtRisk(p, tracked=False, why="a symlink"))
            elif full.is_dir():
                if p not in dirs_now:
                    risks.append(AtRisk(p + "/", tracked=False, why=f"a directory where {rev[:12]} has a file"))
            else:
                files.append(p)
        known = [entries, *(self._tree(r) for r in same_as if r != rev)]
        for p, h in self._hashes(files).items():
            if not any(t.get(p) == h for t in known):
                risks.append(AtRisk(p, tracked=False))
        return risks

    def _save_aside(self, target: str) -> None:
        """Move untracked files a forced checkout of ``target`` would overwrite into the git directory.

        check_clean(target) refuses them up front; a rollback must go on, so what a failed release left
        in the way (or what a caller did not check) is kept, never destroyed.
        """
        self._move_aside([r.path.rstrip("/") for r in self._untracked_in_the_way(target, ())], target)

    def _move_aside(self, paths: Sequence[str], target: str) -> None:
        """Move ``paths`` (relative) to <gitdir>/unitctl/saved/TIME-REV/, as the owner; note it."""
        if not paths:
            return
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        # Absolute: mkdir and mv run in the checkout, whatever directory unitctl was started in.
        dest = _gitdir(self.path).resolve() / "unitctl" / "saved" / f"{stamp}-{target[:12]}"
        for rel in paths:
            to = dest / rel
            self._run(["mkdir", "-p", "--", str(to.parent)])
            self._run(["mv", "-T", "--", rel, str(to)])
        more = f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else ""
        self.saved.extend(paths)
        self._note(f"moved {', '.join(paths[:_SHOWN])}{more} out of the way of {target[:12]} into {dest}")

    def _parent_in_the_way(
        self, path: str, rev: str, tracked: set[str], blocked: set[str], risks: list[AtRisk]
    ) -> bool:
        """Tell whether an untracked file or symlink stands where ``rev`` needs a directory for ``path``; note it."""
        for parent in reversed(list(PurePosixPath(path).parents)[:-1]):
            d = str(parent)
            if d in blocked:
                return True
            if d in tracked:
                continue
            full = self.path / d
            # A symlink is never followed: files of the target must not land (or be looked for) elsewhere.
            if full.is_symlink() or (_lexists(full) and not full.is_dir()):
                blocked.add(d)
                if not regenerable(d):
                    kind = "symlink" if full.is_symlink() else "file"
                    risks.append(AtRisk(d, tracked=False, why=f"a {kind} where {rev[:12]} has a directory"))
                return True
        return False

    def _remove_leftovers(self, interrupted: str, target: str) -> None:
        """Clear files an interrupted checkout of ``interrupted`` wrote that ``target`` does not track.

        Complete ones (its exact content) are deleted; one killed mid-write is moved aside like any
        untracked file in the way.
        """
        tracked_now = set(self._z("ls-files", "-z"))
        theirs = self._tree(interrupted)
        ours = self._tree(target)
        top = self.path.resolve()
        files = [
            p
            for p in theirs
            if p not in tracked_now
            and p not in ours
            and (self.path / p).is_file()
            and not (self.path / p).is_symlink()
            and (self.path / p).resolve().is_relative_to(top)
        ]
        partial = []
        for p, h in self._hashes(files).items():
            if theirs[p] == h:
                with contextlib.suppress(FileNotFoundError):
                    (self.path / p).unlink()
            else:
                partial.append(p)
        self._move_aside(partial, target)

    def _check_locks(self) -> None:
        """Refuse while a process holds a lock file of the checkout (a lock no one holds is stale: a killed git)."""
        for lock in self.stale_locks():  # every lock present: this check is what makes the rest stale
            holders = _holders(lock, self.path)
            if holders:
                raise GitStateError(
                    f"{self.path}: another git process (pid {', '.join(map(str, holders))}) is working in it "
                    f"({lock.name} is held)",
                    hint="wait for it to finish, then retry",
                )

    def stale_locks(self) -> list[Path]:
        """Return the git lock files (index.lock, HEAD.lock) in the checkout: stale once ``check_repo`` passed.

        ``check_repo`` refuses a lock a live git holds, so after it one that is present was left by a killed git
        and is a sign of an interrupted checkout that ``checkout`` removes.
        """
        gitdir = _gitdir(self.path)
        return [gitdir / name for name in _LOCK_FILES if _lexists(gitdir / name)]

    def _torn(self) -> str:
        """Describe an interrupted checkout (stale lock, unitctl's checkout ref), or return ""."""
        signs = [f"{lock.name} left by a killed git" for lock in self.stale_locks()]
        interrupted = self.interrupted_target()
        if interrupted:
            signs.append(f"unitctl's checkout of {interrupted[:12]} was interrupted")
        return f"an interrupted checkout: {', '.join(signs)}" if signs else ""

    # -- revisions -------------------------------------------------------------------------------

    def rollback_target(self, recorded: str | None) -> RollbackTarget | None:
        """Return the revision to roll back to: the recorded last good one, else ORIG_HEAD, HEAD@{1}, HEAD~1."""
        if recorded:
            sha = self.resolve(recorded)
            if sha is None:
                hint = "fetch more history (git fetch --unshallow)" if self.is_shallow() else "fetch it"
                raise GitStateError(
                    f"{self.path} does not have {recorded[:12]}, the last good revision recorded in the history",
                    hint=hint,
                )
            return RollbackTarget(sha, "history")
        for candidate in ("ORIG_HEAD", "HEAD@{1}", "HEAD~1"):
            sha = self.resolve(candidate)
            if sha is not None:
                return RollbackTarget(sha, candidate)
        return None

    def changed_files(self, a: str, b: str) -> list[str]:
        """Return the paths that differ between commits ``a`` and ``b``."""
        if a == b:
            return []
        return self._z("diff", "--name-only", "--no-renames", "-z", a, b, "--")

    def fetch(self, remote: str) -> None:
        """Fetch ``remote`` with its tags, as the checkout's owner (its credentials, its ssh keys)."""
        if not remote or remote.startswith("-"):
            raise GitStateError(f"{remote!r} is not a remote name", hint="pass e.g. --remote origin")
        self._git("fetch", "--quiet", "--tags", "--", remote, timeout=FETCH_TIMEOUT)

    # -- worktrees (the canary's tree) -----------------------------------------------------------

    def add_worktree(self, path: Path, rev: str) -> None:
        """Check ``rev`` out, detached, into a new worktree at ``path`` (absent or an empty directory of the owner)."""
        # --force: a worktree registered at this path whose directory is gone (a killed run) is reused.
        self._git("worktree", "add", "--detach", "--force", "--quiet", str(path), rev)

    def remove_worktree(self, path: Path) -> None:
        """Remove the worktree at ``path`` and its metadata, as the owner; one that is already gone is fine."""
        # Twice --force: also a locked worktree, or one with changes (the canary's tree is never kept).
        self._git("worktree", "remove", "--force", "--force", str(path), check=False)
        if _lexists(path):
            # Not (or no longer) a registered worktree: its files go all the same, as the owner.
            self._run(["rm", "-rf", "--one-file-system", "--", str(path)])
        self._git("worktree", "prune")

    def link_into(self, directory: Path, targets: Sequence[str]) -> None:
        """Make symlinks in ``directory`` to each of ``targets`` (named by their last component), as the owner."""
        if targets:
            self._run(["ln", "-s", "-t", str(directory), "--", *targets])

    def top_level_tracked(self, rev: str = "HEAD") -> set[str]:
        """Return the names of the top-level entries ``rev`` tracks."""
        return set(self._z("ls-tree", "-z", "--name-only", rev))

    # -- the switch ------------------------------------------------------------------------------

    def checkout(self, rev: str) -> list[str]:
        """Force the tree to ``rev`` (detached), signal-safe, repairing a torn tree; purge bytecode; return changes."""
        target = self.resolve(rev)
        if target is None:
            raise GitStateError(f"{self.path} has no revision {rev!r}", hint="fetch it or pick another --rev")
        with signals_held():
            before = self.head()
            changed = self.changed_files(before, target)
            interrupted = self.interrupted_target()
            self._finish_check(target, interrupted)
            dirty = self.dirty_files()
            self.discarded = [p for p in dirty if not regenerable(p)]
            if before != target or dirty or interrupted or self.stale_locks():
                self._switch(target, interrupted)
            # An interrupted checkout may have written another revision's files: their bytecode goes too.
            stale = set(changed) | set(dirty)
            if interrupted and interrupted != target:
                stale.update(self.changed_files(before, interrupted))
            purge_bytecode(self.path, sorted(stale))
        return changed

    def _finish_check(self, target: str, interrupted: str | None) -> None:
        """On the first checkout after check_clean(), refuse untracked data in the way of a target it did not check."""
        if self._checked is None:
            return
        checked_at, cleared = self._checked
        self._checked = None
        if target == checked_at or target in cleared:
            return
        risks = self._not_ours(self._untracked_in_the_way(target, [interrupted] if interrupted else []), interrupted)
        if risks:
            raise self._refusal(risks)

    def _switch(self, target: str, interrupted: str | None) -> None:
        """Force the tree and index to ``target`` and verify the real status; repair once with reset --hard."""
        self._remove_stale_locks()
        if interrupted and interrupted != target:
            self._remove_leftovers(interrupted, target)
        self._save_aside(target)
        self._git("update-ref", CHECKOUT_REF, target)
        first = self._git("checkout", "--quiet", "--force", "--detach", target, check=False)
        if not self._is_at(target):
            # Detach onto the target without touching the tree, then make index and tree match it.
            self._remove_stale_locks()
            self._git("update-ref", "--no-deref", "HEAD", target)
            self._git("reset", "--hard", "--quiet")
            if not self._is_at(target):
                raise GitStateError(
                    f"{self.path} could not be put at {target[:12]}: "
                    f"{_one_line(first.stderr.strip())[-200:] or 'tracked files still differ'}",
                    hint=f"run 'git -C {self.path} status' and repair the checkout by hand",
                )
        self._git("update-ref", "-d", CHECKOUT_REF)

    def _is_at(self, target: str) -> bool:
        """Tell whether HEAD is ``target`` and no tracked file differs from it (the real status, not HEAD alone)."""
        if self.resolve("HEAD") != target or self.stale_locks():
            return False
        out = self._git("status", "--porcelain", "-z", "--untracked-files=no", "--ignore-submodules=all").stdout
        return not out.strip("\0")

    def _remove_stale_locks(self) -> None:
        """Remove lock files no process holds (a killed git left them); refuse while a git holds one."""
        self._check_locks()
        for lock in self.stale_locks():
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            self._note(f"removed {lock}, left by a killed git")


# -- who runs git ----------------------------------------------------------------------------------


def owner_of(path: Path) -> GitUser:
    """Return the account to run git as for the checkout at ``path``; refuse mixed or unsafe ownership."""
    try:
        top = path.stat()
    except OSError as exc:
        raise GitStateError(f"{path}: {exc.strerror}", hint="pass the app's checkout with --repo") from exc
    gitdirs = _gitdirs(path)
    for d in gitdirs:
        try:
            st = d.stat()
        except OSError as exc:
            raise GitStateError(f"{d}: {exc.strerror}", hint="repair the checkout's git directory") from exc
        if st.st_uid != top.st_uid:
            raise GitStateError(
                f"{d} belongs to {_user_name(st.st_uid)} but the working tree {path} to {_user_name(top.st_uid)}: "
                "unitctl runs git only as a checkout's one owner",
                hint=f"give both to one user (chown -R {_user_name(top.st_uid)} {path})",
            )
    me = os.geteuid()
    if me not in (0, top.st_uid):
        raise GitStateError(
            f"{path} belongs to {_user_name(top.st_uid)}, unitctl runs as {_user_name(me)}: "
            "git runs only as the checkout's owner",
            hint="run unitctl as root" + (f" or as {_user_name(top.st_uid)}" if top.st_uid else ""),
        )
    if top.st_uid == 0:
        # Root runs git here: no one else may be able to plant config (programs) or replace the git directory.
        for f in [*gitdirs, *(d / "config" for d in gitdirs)]:
            _refuse_writable_by_others(f)
    try:
        pw: pwd.struct_passwd | None = pwd.getpwuid(top.st_uid)
    except KeyError:
        pw = None
    gid = pw.pw_gid if pw else top.st_gid
    groups = tuple(os.getgrouplist(pw.pw_name, gid)) if pw else (gid,)
    return GitUser(
        uid=top.st_uid,
        gid=gid,
        name=pw.pw_name if pw else f"uid {top.st_uid}",
        home=pw.pw_dir if pw and pw.pw_dir else "/nonexistent",
        groups=groups,
        switch=me == 0 and top.st_uid != 0,
    )


def _refuse_writable_by_others(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    writable = st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_gid != 0)
    if st.st_uid != 0 or stat.S_ISLNK(st.st_mode) or writable:
        raise GitStateError(
            f"{path} can be changed by another user than root, and git would run as root in this root-owned checkout "
            "(a planted hook, filter or command would run as root)",
            hint=f"chown root:root {path} and chmod go-w it, or give the whole checkout to the service user",
        )


def _gitdirs(path: Path) -> list[Path]:
    """Return the git directory of the checkout at ``path`` and its common directory (linked worktrees)."""
    dotgit = path / ".git"
    if dotgit.is_dir():
        return [dotgit]
    try:
        text = dotgit.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as exc:
        raise GitStateError(f"{path} is not a git working tree (no .git in it)", hint="pass --repo") from exc
    if not text.startswith("gitdir:"):
        raise GitStateError(f"{dotgit} is not a git directory or gitdir file", hint="pass the app's checkout")
    gitdir = (path / text.removeprefix("gitdir:").strip()).resolve()
    dirs = [gitdir]
    with contextlib.suppress(OSError):
        dirs.append((gitdir / (gitdir / "commondir").read_text().strip()).resolve())
    return dirs


def _gitdir(path: Path) -> Path:
    return _gitdirs(path)[0]


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def git_env(user: GitUser | None = None) -> dict[str, str]:
    """Return the environment for git: no inherited GIT_*, no prompts, the owner's HOME, the safe overrides."""
    drop = ("GIT_", "SSH_ASKPASS", "XDG_CONFIG_HOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    if user is not None and user.switch:
        env.update({"HOME": user.home, "USER": user.name, "LOGNAME": user.name})
    env.update(
        {"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C", "GIT_CONFIG_COUNT": str(len(_OVERRIDES))}
    )
    for i, (key, value) in enumerate(_OVERRIDES):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


# -- interruptions ---------------------------------------------------------------------------------


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP for the block (git inherits the mask); they arrive, as they were, after it."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _holders(lock: Path, repo: Path) -> list[int]:
    """Return pids of processes that have ``lock`` open or are a git working in ``repo`` (all of them, as root)."""
    want = os.path.realpath(lock)
    top = os.path.realpath(repo)
    me = os.getpid()
    pids: list[int] = []
    for entry in _proc_pids():
        if entry == me:
            continue
        base = f"/proc/{entry}"
        try:
            with open(f"{base}/comm", encoding="utf-8", errors="replace") as f:
                comm = f.read().strip()
            if comm.startswith("git") and os.readlink(f"{base}/cwd") == top:
                pids.append(entry)
                continue
            fds = os.listdir(f"{base}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"{base}/fd/{fd}") == want:
                    pids.append(entry)
                    break
    return pids


def _proc_pids() -> Iterable[int]:
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


# -- files -----------------------------------------------------------------------------------------


def regenerable(path: str) -> bool:
    """Tell whether ``path`` (relative, /-separated) is bytecode Python regenerates (never worth refusing for)."""
    p = PurePosixPath(path.rstrip("/"))
    return p.suffix in (".pyc", ".pyo") or "__pycache__" in p.parts


def _lexists(path: Path) -> bool:
    return os.path.lexists(path)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def purge_bytecode(root: Path, changed: Sequence[str]) -> list[Path]:
    """Delete cached bytecode of the changed ``.py`` files under ``root``; return what was removed."""
    removed: list[Path] = []
    top = root.resolve()
    for rel in changed:
        if not rel.endswith(".py"):
            continue
        src = root / rel
        cache = src.parent / "__pycache__"
        stem = src.name[: -len(".py")]
        # A __pycache__ (or a parent) that is a symlink out of the checkout is not ours to clean.
        if not cache.resolve().is_relative_to(top):
            continue
        try:
            entries = list(cache.iterdir())
        except OSError:
            continue
        for entry in entries:
            # <stem>.<tag>.pyc and <stem>.<tag>.opt-N.pyc
            if entry.name.startswith(stem + ".") and entry.name.endswith(".pyc") and entry.name.count(".") >= 2:
                try:
                    entry.unlink()
                    removed.append(entry)
                except FileNotFoundError:
                    pass
    return removed
