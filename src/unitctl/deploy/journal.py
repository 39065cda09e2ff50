"""The intent journal: before each step a deploy appends what it is about to do, durably.

One file per unit, ``HISTORY_DIR/journal/NAME.service.jsonl``, holding the current (or last) transaction (a
note beside the unit's lock names that HISTORY_DIR, so a command given another --history-dir finds it too):

    {"event": "begin", "tx": ..., "pid": ..., "command": "apply", "time": ..., ...}   what to recover with
    {"event": "note", "tx": ..., "to_rev": ..., "was_active": ...}                      what capture learned
    {"event": "step", "tx": ..., "step": "unit-write", "undo": {...}}                  before the step acts
    {"event": "undo", "tx": ..., "undo": {...}}                                         a changed undo target
    {"event": "drop", "tx": ..., "resource": "unit"}                                    a step failed, changing nothing
    {"event": "step", "tx": ..., "step": "record", "record": {...}}                     the outcome, decided
    {"event": "end", "tx": ...}                                                         recorded in the history

A transaction without its "end" line was cut short (kill -9, OOM, power loss): the next unitctl command for
the unit finishes it from these lines. Lines are appended with ``history.append_line`` (fsync'd, short writes
taken back), so a line is either whole or absent.

The fault hook (a test hook, inert unless both variables are set): with ``UNITCTL_FAULT_PAUSE=STEP`` and
``UNITCTL_FAULT_FILE=PATH``, right after announcing STEP the deploy writes its PID to PATH and waits, polling
every 50 ms, until PATH is removed.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unitctl import fsutil, history
from unitctl.deploy.model import STEPS
from unitctl.deploy.undo import Undo, UndoLog
from unitctl.errors import InputError

JOURNAL_DIR = "journal"
FAULT_PAUSE_ENV = "UNITCTL_FAULT_PAUSE"
FAULT_FILE_ENV = "UNITCTL_FAULT_FILE"
FAULT_POLL_SECONDS = 0.05


def journal_path(history_dir: Path, unit: str) -> Path:
    """Return the intent journal of ``unit``."""
    return history_dir / JOURNAL_DIR / f"{unit}.jsonl"


def remember(history_dir: Path, unit: str) -> None:
    """Note beside the unit's lock which history directory holds its journal: another --history-dir finds it."""
    from unitctl import lock

    fsutil.atomic_write(_pointer(unit, lock.default_dir()), f"{history_dir.absolute()}\n".encode(), mode=0o600)


def history_dirs(unit: str, history_dir: Path) -> list[Path]:
    """Return where the unit's journal may be: ``history_dir``, then the one its latest deploy noted."""
    from unitctl import lock

    try:
        noted = Path(_pointer(unit, lock.default_dir()).read_text().strip())
    except OSError:
        return [history_dir]
    if not noted.is_absolute() or noted == history_dir.absolute():
        return [history_dir]
    return [history_dir, noted]


def _pointer(unit: str, lock_dir: Path) -> Path:
    return lock_dir / f"{unit}.journal"


def fault_pause(step: str, environ: Mapping[str, str] | None = None) -> None:
    """Test hook: at ``step``, write our PID to $UNITCTL_FAULT_FILE and wait until the file is removed."""
    env = os.environ if environ is None else environ
    if step not in STEPS or env.get(FAULT_PAUSE_ENV) != step or not env.get(FAULT_FILE_ENV):
        return
    path = Path(env[FAULT_FILE_ENV])
    # Whole or absent: whoever waits for the file reads a complete PID.
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.rename(path)
    while path.exists():
        time.sleep(FAULT_POLL_SECONDS)


@dataclass
class Transaction:
    """A transaction as read back from the journal."""

    tx: str
    begin: dict[str, Any]
    steps: list[str] = field(default_factory=list)
    undos: list[Undo] = field(default_factory=list)
    record: dict[str, Any] | None = None  # set once the outcome was decided ("record" step)
    ended: bool = False

    @property
    def last_step(self) -> str:
        return self.steps[-1] if self.steps else "begin"

    def undo_log(self) -> UndoLog:
        return UndoLog(self.undos)


class Journal:
    """Append intents for one unit's transaction; read back an unfinished one."""

    def __init__(self, history_dir: Path, unit: str) -> None:
        self.path = journal_path(history_dir, unit)
        self.tx = ""

    def begin(self, **facts: Any) -> str:
        """Start a new transaction (the previous one is finished): the file holds only this one from now on."""
        self.tx = uuid.uuid4().hex
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = _line({"event": "begin", "tx": self.tx, "pid": os.getpid(), **facts})
        fsutil.atomic_write(self.path, line, mode=0o600)
        return self.tx

    def step(self, name: str, *, undo: Undo | None = None, record: Mapping[str, Any] | None = None) -> None:
        """Announce ``name`` (with the undo it registers, or the decided record) before it acts."""
        if name not in STEPS:
            raise ValueError(f"unknown step {name!r}")
        if self.tx:
            entry: dict[str, Any] = {"event": "step", "tx": self.tx, "step": name}
            if undo is not None:
                entry["undo"] = undo.to_json()
            if record is not None:
                entry["record"] = dict(record)
            history.append_line(self.path, _line(entry))
        fault_pause(name)

    def register(self, undo: Undo) -> None:
        """Record an undo registered outside a step's announcement (a target that changed)."""
        if self.tx:
            history.append_line(self.path, _line({"event": "undo", "tx": self.tx, "undo": undo.to_json()}))

    def drop(self, resource: str) -> None:
        """Record that a step failed without changing its resource: nothing of it to undo."""
        if self.tx:
            history.append_line(self.path, _line({"event": "drop", "tx": self.tx, "resource": resource}))

    def note(self, **facts: Any) -> None:
        """Add what capture learned (revisions, the rollback's budget) to the transaction's begin facts."""
        if self.tx:
            history.append_line(self.path, _line({"event": "note", "tx": self.tx, **facts}))

    def end(self) -> None:
        """Mark the transaction finished: its outcome is in the history."""
        if self.tx:
            history.append_line(self.path, _line({"event": "end", "tx": self.tx}))
            self.tx = ""

    def unfinished(self) -> Transaction | None:
        """Return the transaction in the journal when it has no "end" line, else None."""
        current = read(self.path)
        return current if current is not None and not current.ended else None


def read(path: Path) -> Transaction | None:
    """Read the last transaction of a journal file (lines that do not parse are skipped)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(
            f"cannot read the deploy journal {path}: {exc.strerror}",
            hint="check --history-dir; an unreadable journal may hide a deploy that died (nothing was changed)",
        ) from exc
    current: Transaction | None = None
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        event, tx = entry.get("event"), str(entry.get("tx", ""))
        if event == "begin":
            current = Transaction(tx=tx, begin=entry)
        elif current is not None and tx == current.tx and isinstance(event, str) and event in _APPLY:
            _APPLY[event](current, entry)
    return current


def _read_step(current: Transaction, entry: dict[str, Any]) -> None:
    current.steps.append(str(entry.get("step")))
    _read_undo(current, entry)


def _read_undo(current: Transaction, entry: dict[str, Any]) -> None:
    if isinstance(entry.get("undo"), dict):
        try:
            current.undos.append(Undo.from_json(entry["undo"]))
        except (TypeError, ValueError):
            return  # an undo that does not parse is skipped like a line that does not (and so is its record)
    if isinstance(entry.get("record"), dict):
        current.record = entry["record"]


def _read_drop(current: Transaction, entry: dict[str, Any]) -> None:
    current.undos = [u for u in current.undos if u.resource != entry.get("resource")]


def _read_note(current: Transaction, entry: dict[str, Any]) -> None:
    current.begin.update({k: v for k, v in entry.items() if k not in ("event", "tx")})


def _read_end(current: Transaction, entry: dict[str, Any]) -> None:
    current.ended = True


# How each event after "begin" changes the transaction it belongs to.
_APPLY: dict[str, Callable[[Transaction, dict[str, Any]], None]] = {
    "step": _read_step,
    "undo": _read_undo,
    "drop": _read_drop,
    "note": _read_note,
    "end": _read_end,
}


def _line(entry: Mapping[str, Any]) -> bytes:
    return (json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str) + "\n").encode()
