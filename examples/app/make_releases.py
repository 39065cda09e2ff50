#!/usr/bin/env python3
"""Build the example app's git history (one commit and tag per release) in a target directory.

    python3 examples/app/make_releases.py TARGET [--origin DIR] [--json]
        [--unit-out FILE --venv DIR --port N --database-url URL]

Releases, oldest first:

    v1                good
    v2                good (another release string)
    v3-broken-import  the Pydantic 2 upgrade: ``from pydantic import BaseSettings`` raises ImportError
    v4-db-down        imports fine, but points the database at a location that does not exist:
                      /health is 200, /health/ready is 503 forever
    v5                good

The history is built, not committed as a nested repository, so every run gets real commits and the
deploy tools see an ordinary checkout. ``--unit-out`` also writes the app's unit (app.service.in with
its placeholders filled in). Uses only the standard library and the git command line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP_FILES = ("wsgi.py", "asgi.py", "db.py", "settings.py", "release.py", "initdb.py", "requirements.txt", ".gitignore")
OVERLAYS = HERE / "releases"


@dataclass(frozen=True)
class Release:
    """One release of the app and what a guarded deploy of it is expected to do."""

    tag: str
    release: str  # the string `/` shows
    summary: str
    expect: str  # "deployed", "refused" (pre-import fails, nothing restarted), "rolled-back"
    rev: str = ""


RELEASES = (
    Release("v1", "v1", "first release", "deployed"),
    Release("v2", "v2", "a good release (new release string)", "deployed"),
    Release("v3-broken-import", "v3", "upgrade to Pydantic 2: BaseSettings import fails", "refused"),
    Release("v4-db-down", "v4", "the database moved to a location that does not exist", "rolled-back"),
    Release("v5", "v5", "a good release again", "deployed"),
)


class BuildError(Exception):
    """The history could not be built; the message says why and what to do."""


def _git(target: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "demoapp release bot",
        "GIT_AUTHOR_EMAIL": "releases@demoapp.invalid",
        "GIT_COMMITTER_NAME": "demoapp release bot",
        "GIT_COMMITTER_EMAIL": "releases@demoapp.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(target),  # ignore the caller's ~/.gitconfig (hooks, signing)
    }
    proc = subprocess.run(["git", "-C", str(target), *args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise BuildError(f"git {' '.join(args)} failed in {target}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout.strip()


def _clear_tree(target: Path) -> None:
    for child in target.iterdir():
        if child.name == ".git":
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _write_release(target: Path, rel: Release) -> None:
    """Make the working tree exactly the base app plus the release's overlay."""
    _clear_tree(target)
    for name in APP_FILES:
        shutil.copy2(HERE / name, target / name)
    overlay = OVERLAYS / rel.tag
    if overlay.is_dir():
        shutil.copytree(overlay, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    release_py = target / "release.py"
    text = release_py.read_text()
    new_text, n = re.subn(r'^RELEASE = "[^"]*"$', f'RELEASE = "{rel.release}"', text, flags=re.M)
    if n != 1:
        raise BuildError(f'{HERE / "release.py"}: expected one line RELEASE = "..."')
    release_py.write_text(new_text)
    if rel.tag == "v3-broken-import":
        with (target / "requirements.txt").open("a") as fh:
            fh.write("pydantic>=2  # vendored stand-in in pydantic/ (see its docstring)\n")


def build(target: Path) -> list[Release]:
    """Create ``target`` as a git repository holding every release as a commit and a tag."""
    if target.exists() and any(target.iterdir()):
        raise BuildError(f"{target} exists and is not empty; pass a new or empty directory")
    target.mkdir(parents=True, exist_ok=True)
    _git(target, "init", "-q", "-b", "main")
    built: list[Release] = []
    for rel in RELEASES:
        _write_release(target, rel)
        _git(target, "add", "--all")
        _git(target, "commit", "-q", "--no-verify", "-m", f"{rel.release}: {rel.summary}")
        _git(target, "tag", rel.tag)
        built.append(Release(rel.tag, rel.release, rel.summary, rel.expect, _git(target, "rev-parse", "HEAD")))
    # Leave the checkout at the first release, as a server would be before its first deploy, with no
    # reflog or ORIG_HEAD pointing at later releases (they would look like earlier deploys).
    _git(target, "checkout", "-q", "--detach", "v1")
    _git(target, "reflog", "expire", "--expire=all", "--all")
    (target / ".git" / "ORIG_HEAD").unlink(missing_ok=True)
    return built


def clone_first_release(origin: Path, target: Path) -> None:
    """Clone ``origin`` into ``target`` with only v1, as a server is set up; later releases need a fetch."""
    if target.exists() and any(target.iterdir()):
        raise BuildError(f"{target} exists and is not empty; pass a new or empty directory")
    proc = subprocess.run(
        [
            "git",
            "clone",
            "-q",
            "--no-local",
            "--no-tags",
            "--single-branch",
            "--branch",
            "v1",
            str(origin),
            str(target),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BuildError(f"git clone {origin} {target} failed: {proc.stderr.strip()}")


def render_unit(*, app_dir: Path, venv: Path, port: int, database_url: str) -> str:
    """Fill the placeholders of app.service.in."""
    for label, path in (("--venv", venv), ("app directory", app_dir)):
        if not path.is_absolute():
            raise BuildError(f"{label} must be an absolute path, not {path}")
    if not 1 <= port <= 65535:
        raise BuildError(f"--port must be 1..65535, not {port}")
    if any(c in database_url for c in " \n\"'\\%$"):
        raise BuildError("--database-url must not contain spaces, quotes, backslashes, % or $")
    text = (HERE / "app.service.in").read_text()
    for key, value in {
        "@APP_DIR@": str(app_dir),
        "@VENV@": str(venv),
        "@PORT@": str(port),
        "@DATABASE_URL@": database_url,
    }.items():
        text = text.replace(key, value)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="directory to create the repository in (new or empty)")
    parser.add_argument(
        "--origin",
        type=Path,
        help="build the history here instead and make TARGET a clone of it holding only v1 (deploys then --fetch)",
    )
    parser.add_argument("--json", action="store_true", help="print the releases as JSON")
    parser.add_argument("--unit-out", type=Path, help="also write the app's unit here")
    parser.add_argument("--venv", type=Path, default=Path(sys.prefix), help="venv with gunicorn [this Python's]")
    parser.add_argument("--port", type=int, default=8000, help="port Gunicorn binds on 127.0.0.1 [8000]")
    parser.add_argument("--database-url", help="DATABASE_URL of the service [sqlite:////TARGET/../data/app.db]")
    args = parser.parse_args(argv)
    target = args.target.resolve()
    try:
        if args.unit_out:
            db_url = args.database_url or f"sqlite:///{target.parent / 'data' / 'app.db'}"
            unit = render_unit(app_dir=target, venv=args.venv, port=args.port, database_url=db_url)
        if args.origin:
            built = build(args.origin.resolve())
            clone_first_release(args.origin.resolve(), target)
        else:
            built = build(target)
        if args.unit_out:
            args.unit_out.parent.mkdir(parents=True, exist_ok=True)
            args.unit_out.write_text(unit)
    except BuildError as exc:
        print(f"make_releases: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"repo": str(target), "releases": [asdict(r) for r in built]}, indent=2))
    else:
        for rel in built:
            print(f"{rel.tag:<18} {rel.rev[:12]}  expect {rel.expect:<11} {rel.summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
