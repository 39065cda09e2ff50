"""The git edge: capture revisions, refuse dirty or shallow trees, switch revisions bytecode-safely.

Bytecode safety: Python trusts ``__pycache__/<mod>.cpython-XY.pyc`` when the source's mtime (whole
seconds) and size match what the .pyc recorded. A checkout that swaps a file for one of the same size
within the same second would leave the other release's bytecode in force. After every checkout the
cached bytecode of every file that changed between the two revisions is deleted, so the next import
compiles from the source that is actually on disk.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from unitctl.errors import GitStateError, InputError

GIT_TIMEOUT = 120.0


@dataclass(frozen=True)
class RollbackTarget:
    """The revision to return to and where it came from."""

    rev: str
    source: str  # "history", "ORIG_HEAD", "HEAD@{1}", "HEAD~1"


class GitRepo:
    """A working tree driven through the ``git`` command line (argv only, never a shell)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(
                ["git", "-C", str(self.path), *args],
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT,
                check=False,
                # Hooks and pagers must not run; the repo may belong to another user than root.
                env=_git_env(),
            )
        except FileNotFoundError as exc:
            raise InputError("git is not installed", hint="install git (apt-get install git)") from exc
        except subprocess.TimeoutExpired as exc:
            raise GitStateError(f"git {' '.join(args)} in {self.path} did not finish in {GIT_TIMEOUT:g}s") from exc
        if check and proc.returncode != 0:
            raise GitStateError(
                f"git {' '.join(args)} failed in {self.path}: {(proc.stderr or proc.stdout).strip()[-300:]}",
                hint="check the repository",
            )
        return proc

    def check_repo(self) -> None:
        """Raise GitStateError unless ``path`` is the top of a git working tree."""
        if not self.path.is_dir():
            raise GitStateError(f"{self.path}: no such directory", hint="pass the app's checkout with --repo")
        proc = self._git("rev-parse", "--show-toplevel", check=False)
        if proc.returncode != 0:
            raise GitStateError(f"{self.path} is not a git working tree", hint="pass the app's checkout with --repo")

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

    def check_clean(self) -> None:
        """Raise GitStateError when tracked files are modified."""
        dirty = self.dirty_files()
        if dirty:
            shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
            raise GitStateError(
                f"{self.path} has modified tracked files ({shown}): a rollback would lose them",
                hint="commit or discard the changes, then retry",
            )

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
        out = self._git("diff", "--name-only", "--no-renames", "-z", a, b, "--").stdout
        return [p for p in out.split("\0") if p]

    def checkout(self, rev: str) -> list[str]:
        """Check out ``rev`` (detached), purge bytecode of the changed files; return those files."""
        before = self.head()
        target = self.resolve(rev)
        if target is None:
            raise GitStateError(f"{self.path} has no revision {rev!r}", hint="fetch it or pick another --rev")
        changed = self.changed_files(before, target)
        if before != target:
            self._git("checkout", "--quiet", "--detach", target)
        purge_bytecode(self.path, changed)
        return changed


def _git_env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_PAGER": "cat",
            "LC_ALL": "C",
            # A root-run deploy of a tree owned by the app user is normal here (CVE-2022-24765 check).
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "safe.directory",
            "GIT_CONFIG_VALUE_0": "*",
        }
    )
    return env


def purge_bytecode(root: Path, changed: Sequence[str]) -> list[Path]:
    """Delete cached bytecode of the changed ``.py`` files under ``root``; return what was removed."""
    removed: list[Path] = []
    for rel in changed:
        if not rel.endswith(".py"):
            continue
        src = root / rel
        cache = src.parent / "__pycache__"
        stem = src.name[: -len(".py")]
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
