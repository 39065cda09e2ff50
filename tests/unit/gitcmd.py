"""git on a temporary repository for the unit tests: a fixed identity, text output, commits of whole files."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}


def git(repo: Path, *args: str, check: bool = True) -> str:
    """Run git in ``repo`` and return its stdout."""
    env = {**os.environ, **IDENTITY}
    return subprocess.run(["git", "-C", str(repo), *args], check=check, capture_output=True, text=True, env=env).stdout


def commit(repo: Path, files: Mapping[str, str], message: str) -> str:
    """Write ``files`` (path → text), commit them and return the new HEAD's hash."""
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
        git(repo, "add", "-f", name)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()
