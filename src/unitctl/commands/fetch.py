"""``unitctl fetch``: fetch a remote into a checkout as the checkout's owner (no hooks, no fsmonitor)."""

from __future__ import annotations

from pathlib import Path

from unitctl.commands.settings import FetchSettings


def run(*, settings: FetchSettings) -> None:
    """Fetch ``settings.remote`` (with its tags) into the checkout ``settings.repo``."""
    from unitctl.gitrepo import GitRepo

    repo = GitRepo(Path(settings.repo))
    repo.check_repo()
    repo.fetch(settings.remote)
