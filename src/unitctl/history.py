"""Append-only deploy history: one JSON object per attempt in ``<dir>/history.jsonl``, fsync'd.

Every apply or rollback attempt, whatever its outcome, appends one record. Unit files that were
deployed are kept content-addressed in ``<dir>/units/<sha256>`` so ``unitctl rollback`` can put back
the exact bytes of an earlier good deploy.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from unitctl import fsutil, masking
from unitctl.errors import InputError

DEFAULT_DIR = Path("/var/lib/unitctl")
# A history this large is refused with its size rather than read into memory (a year of deploys is a few MiB).
HISTORY_LIMIT = 256 * 2**20
HISTORY_NAME = "history.jsonl"
Outcome = Literal["ok", "nothing-to-do", "refused", "rolled-back", "rollback-failed", "interrupted", "would-change"]
GOOD_OUTCOMES = ("ok",)


@dataclass(frozen=True)
class Phase:
    """One step of an attempt and how long it took."""

    name: str
    seconds: float
    ok: bool = True
    detail: str = ""


@dataclass
class Record:
    """One apply/rollback attempt."""

    time: str  # ISO 8601 UTC, when the attempt started
    unit: str
    command: str  # apply, rollback
    outcome: Outcome
    exit_code: int
    from_rev: str | None = None
    to_rev: str | None = None
    repo: str | None = None
    unit_sha256: str | None = None  # the unit file in place after the attempt
    candidate_sha256: str | None = None  # the unit file the attempt tried to deploy
    rollback_source: str | None = None  # where the rollback revision came from (history, ORIG_HEAD, ...)
    ready_url: str | None = None
    strategy: str | None = None
    action: str | None = None  # how the release was switched: reload (HUP) or restart
    rollback_action: str | None = None  # how a rollback brought the previous release back: reload or restart
    reason: str = ""
    phases: list[Phase] = field(default_factory=list)
    journal: list[str] = field(default_factory=list)
    output: str = ""  # full output of a failed check (pre-import, build)
    pid: int = field(default_factory=os.getpid)
    tx: str = ""  # the transaction id in the intent journal
    invocation_id: str = ""  # the service's InvocationID verified ready at the end of the attempt ("" unknown)
    running_rev: str | None = None  # the revision that process was started from
    interrupted_step: str = ""  # the step an interrupted deploy had announced last (outcome "interrupted")
    recovered_by: str = ""  # the later command that finished an interrupted deploy ("apply", "status", ...)
    trigger: dict[str, str] = field(default_factory=lambda: current_trigger())  # who and what started it (audit)

    def to_json(self) -> dict[str, Any]:
        """Return the record as unitctl writes it anywhere (history, --json, step summary): free text masked."""
        data = asdict(self)
        for key in ("reason", "output", "ready_url"):
            if data[key]:
                data[key] = masking.mask(data[key])
        data["journal"] = masking.mask_all(data["journal"])
        for phase in data["phases"]:
            phase["detail"] = masking.mask(phase["detail"])
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["phases"] = [Phase(**p) for p in data.get("phases", [])]
        values.setdefault("trigger", {})  # an older record: who started it is unknown, not whoever reads it now
        return cls(**values)


def _ensure_dir(directory: Path) -> None:
    try:
        fsutil.private_dir(directory)
    except OSError as exc:
        raise InputError(
            f"cannot create the history directory {directory}: {exc.strerror}",
            hint="run as root or pass --history-dir DIR",
        ) from exc


def append(directory: Path, record: Record) -> None:
    """Append ``record`` as one JSON line, durably and never torn."""
    _ensure_dir(directory)
    line = json.dumps(record.to_json(), sort_keys=True, separators=(",", ":")) + "\n"
    append_line(directory / HISTORY_NAME, line.encode())


def append_line(path: Path, line: bytes) -> None:
    """Append one newline-terminated line to ``path`` and fsync it; on any failure leave the file as it was.

    A short write (a full disk) is truncated away instead of left for the next line to glue onto, and a file
    whose last line a crash cut short gets its newline first, so every complete line stays a line of its own.
    """
    if not line.endswith(b"\n"):
        raise ValueError("a journal line must end with a newline")
    created = not path.exists()
    fd = _open_locked(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        try:
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                if written <= 0:
                    raise OSError(errno.EIO, "short write")
                view = view[written:]
            os.fsync(fd)
        except BaseException:
            # Take back a partial line; what was there before stays byte for byte.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
                os.fsync(fd)
            raise
    finally:
        os.close(fd)
    if created:
        fsutil.fsync_dir(path.parent)


def _open_locked(path: Path, flags: int) -> int:
    """Open ``path`` and hold its flock, reopening when a prune replaced the file meanwhile (its inode changed).

    Appenders and ``prune`` take the same lock, so a line appended while a prune rewrites the file is never lost.
    """
    while True:
        # Private to root (journal excerpts), created so whatever the umask, never through a symlink.
        fd = fsutil.open_private(path, flags)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass  # renamed away between open and stat: open the new one
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def read(directory: Path, unit: str | None = None) -> list[Record]:
    """Return the recorded attempts (of ``unit``), oldest first; skip lines a crash may have cut short."""
    path = directory / HISTORY_NAME
    try:
        path.stat()
    except FileNotFoundError:
        return []
    except OSError as exc:  # e.g. --history-dir names a file: "Not a directory"
        raise InputError(f"{path}: cannot read: {exc.strerror}", hint="check --history-dir") from exc
    # Capped, regular files only: a FIFO or a device planted as history.jsonl must not hang or exhaust unitctl.
    data = fsutil.read_input(path, what="history file", hint=f"check --history-dir {directory}", limit=HISTORY_LIMIT)
    lines = data.decode("utf-8", errors="replace").splitlines()
    records: list[Record] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            rec = Record.from_json(data)
        except (ValueError, TypeError):
            continue
        if unit is None or rec.unit == unit:
            records.append(rec)
    return records


def last_good(records: Sequence[Record]) -> Record | None:
    """Return the latest successful deploy in ``records``, or None."""
    for rec in reversed(records):
        if rec.outcome in GOOD_OUTCOMES:
            return rec
    return None


def previous_good(records: Sequence[Record]) -> Record | None:
    """Return the latest good deploy that differs (revision or unit) from the current good one."""
    current = last_good(records)
    if current is None:
        return None
    for rec in reversed(records):
        if rec.outcome in GOOD_OUTCOMES and (rec.to_rev, rec.unit_sha256) != (current.to_rev, current.unit_sha256):
            return rec
    return None


def prune_selection(records: Sequence[Record], keep: int) -> list[bool]:
    """Return, per record (oldest first), whether a prune keeping the ``keep`` newest keeps it.

    The records ``unitctl rollback`` and the next apply read are always kept: the last good deploy and the
    previous good one, so ``previous_good`` of what is kept is ``previous_good`` of everything.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    needed = {id(r) for r in (last_good(records), previous_good(records)) if r is not None}
    newest = len(records) - keep
    return [i >= newest or id(r) in needed for i, r in enumerate(records)]


@dataclass(frozen=True)
class Pruned:
    """What a prune removed (or, dry, would remove)."""

    removed: list[Record]
    kept: int
    units: list[str]  # digests of stored unit files removed with them


def _digests(rec: Record) -> set[str]:
    return {d for d in (rec.unit_sha256, rec.candidate_sha256) if d}


def prune(directory: Path, unit: str, keep: int, *, dry_run: bool = False) -> Pruned:
    """Remove the records of ``unit`` a prune keeping ``keep`` does not keep, and the unit files only they referenced.

    The history is rewritten to a new file and renamed over the old one while its lock is held; other units'
    lines stay byte for byte. A stored unit file goes only when no remaining record and no intent journal
    (a deploy in flight or waiting for recovery) names its digest.
    """
    path = directory / HISTORY_NAME
    if not path.exists():
        return Pruned([], 0, [])
    fd = _open_locked(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size > HISTORY_LIMIT:
            raise InputError(f"{path}: {size} bytes is too large to prune", hint="move it aside and start a new one")
        data = os.pread(fd, size, 0)
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        parsed: list[tuple[int, Record]] = []
        for index, line in enumerate(lines):
            try:
                rec = Record.from_json(json.loads(line))
            except (ValueError, TypeError):
                continue
            if rec.unit == unit:
                parsed.append((index, rec))
        keep_flags = prune_selection([r for _, r in parsed], keep)
        drop = {index for (index, _), kept in zip(parsed, keep_flags, strict=True) if not kept}
        removed = [r for (index, r) in parsed if index in drop]
        # Whatever a remaining line (of any unit) or a journal names stays: a digest is a digest wherever it is.
        referenced = _named_digests(line for index, line in enumerate(lines) if index not in drop)
        referenced |= _journal_digests(directory)
        gone = sorted(set().union(*(_digests(r) for r in removed)) - referenced) if removed else []
        gone = [d for d in gone if (directory / "units" / d).exists()]
        if dry_run or not removed:
            return Pruned(removed, len(parsed) - len(removed), gone)
        text = b"".join(line + b"\n" for index, line in enumerate(lines) if index not in drop)
        fsutil.atomic_write(path, text, mode=fsutil.PRIVATE_FILE)  # rename and fsync of the directory
        # Still under the lock: no record naming one of these can be appended before it is gone.
        for digest in gone:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / "units" / digest)
        if gone:
            fsutil.fsync_dir(directory / "units")
    finally:
        os.close(fd)  # the lock goes with it, after the rename: an appender waiting on the old file reopens
    return Pruned(removed, len(parsed) - len(removed), gone)


def _named_digests(chunks: Iterable[bytes]) -> set[str]:
    return {m.decode() for chunk in chunks for m in re.findall(rb"[0-9a-f]{64}", chunk)}


def _journal_digests(directory: Path) -> set[str]:
    """Return every digest an intent journal under ``directory`` names (its undo may need those bytes)."""
    from unitctl.deploy.journal import JOURNAL_DIR

    journals = directory / JOURNAL_DIR
    if not journals.is_dir():
        return set()
    return _named_digests(fsutil.read_capped(entry, HISTORY_LIMIT) or b"" for entry in journals.iterdir())


def store_unit(directory: Path, data: bytes) -> str:
    """Keep a copy of deployed unit bytes under ``units/<sha256>``; return the digest."""
    digest = fsutil.sha256(data)
    units = directory / "units"
    _ensure_dir(units)
    target = units / digest
    if not target.exists():
        fsutil.atomic_write(target, data, mode=fsutil.PRIVATE_FILE)
    else:
        fsutil.tighten(target, fsutil.PRIVATE_FILE)  # a copy kept by an older unitctl may be 0644
    return digest


def stored_unit(directory: Path, digest: str) -> bytes | None:
    """Return the unit bytes stored under ``digest``, or None if they were not kept."""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        return None
    return fsutil.read_capped(directory / "units" / digest, fsutil.MAX_INPUT_BYTES)


def current_trigger(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Say who and what started this attempt, from what the process can tell: for the audit, never for a decision.

    ``user`` is the person behind sudo (SUDO_USER) or the login; ``ssh_from`` the client address of an SSH
    session; under GitHub Actions the actor, repository, workflow, commit and the run's URL.
    """
    import pwd

    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    user = env.get("SUDO_USER") or env.get("LOGNAME") or env.get("USER")
    if not user:
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = str(os.getuid())
    out["user"] = user
    if env.get("SSH_CLIENT"):
        out["ssh_from"] = env["SSH_CLIENT"].split()[0]
    if env.get("GITHUB_ACTIONS") == "true":
        for key, name in (("GITHUB_ACTOR", "actor"), ("GITHUB_REPOSITORY", "repository"),
                          ("GITHUB_WORKFLOW", "workflow"), ("GITHUB_SHA", "sha")):  # fmt: skip
            if env.get(key):
                out[name] = env[key][:200]
        if env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
            server = env.get("GITHUB_SERVER_URL") or "https://github.com"
            out["run_url"] = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    return out


def iter_lines(records: Iterable[Record]) -> Iterable[str]:
    """Yield one human line per record."""
    for rec in records:
        rev = f"{_short(rec.from_rev)} -> {_short(rec.to_rev)}"
        total = sum(p.seconds for p in rec.phases)
        reason = f"  {rec.reason}" if rec.reason and rec.outcome != "ok" else ""
        who = rec.trigger.get("actor") or rec.trigger.get("user")
        by = f"  by {who}" if who else ""
        yield f"{rec.time}  {rec.command:<8} {rec.outcome:<15} exit {rec.exit_code}  {rev}  {total:.1f}s{by}{reason}"


def _short(rev: str | None) -> str:
    return rev[:10] if rev else "-"
