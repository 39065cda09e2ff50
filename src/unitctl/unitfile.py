"""A lossless model of systemd unit and drop-in files, with systemd's own reading of them.

``UnitFile.parse(text).serialize() == text`` for every text (comments, blank lines, odd spacing,
continuations, duplicate keys, CRLF, a BOM, no final newline...). Edits touch only the bytes they change.

systemd's reading (systemd 252, ``src/shared/conf-parser.c`` and ``src/basic/fileio.c:read_line``):

- line ends are ``\\n``, ``\\r``, ``\\r\\n`` or ``\\n\\r`` (and NUL);
- a line whose first non-blank character is ``#`` or ``;`` is a comment; that check comes before
  continuation handling, so comment lines inside a continuation are skipped and do not end it;
- an odd number of trailing backslashes continues the line: the last backslash becomes a space and the
  next line is appended with its leading whitespace; an empty line ends a continuation; a trailing
  backslash at the end of the file is accepted;
- the logical line is stripped; ``[...]`` is a section header and must end with ``]`` (else systemd
  refuses the file: ``UnitSyntaxError``); a line without ``=`` (or before any section) is ignored with a
  warning (kept here, listed in ``UnitFile.warnings``); key and value are stripped;
- an empty assignment resets a list (``ExecStart=``, ``Environment=``...), except dependencies (``After=``,
  ``Wants=``... cannot be reset); for single values the last assignment wins.

Line numbers in messages are 1-based and name the first physical line of a logical line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from unitctl.errors import InputError, UnitSyntaxError, UsageError
from unitctl.unitname import split_unit_name

WHITESPACE = " \t\n\r"
COMMENTS = "#;"
BOM = "\ufeff"

# systemd's system unit load path (systemd 252, highest priority first).
SYSTEM_UNIT_PATH: tuple[str, ...] = (
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/run/systemd/system",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/run/systemd/generator.late",
)

# One physical line: its content, then one line end as read_line() counts it.
_LINE_RE = re.compile(r"([^\r\n\x00]*)(\r\n?\x00?|\n\r?\x00?|\x00|)")


@dataclass(eq=False)
class Entry:
    """One assignment ``Key=value`` as systemd sees it, tied to its exact source text."""

    section: str
    key: str
    value: str  # as systemd sees it: continuations joined, stripped, comment lines skipped
    line: int = 0  # 1-based physical line where the assignment starts
    path: str | None = None  # file it came from (UnitFile.path)
    raw: str = field(default="", repr=False)  # exact source: every physical line of it, line ends included

    @property
    def where(self) -> str:
        """Return "path:line" for messages."""
        return _where(self.path, self.line)


@dataclass(frozen=True)
class Edit:
    """Replace ``Entry.value[start:end]`` with ``replacement`` (raw text as it goes into the file)."""

    start: int
    end: int
    replacement: str


@dataclass(frozen=True)
class UnitWarning:
    """A line systemd would load with a warning (and ignore)."""

    path: str | None
    line: int
    message: str

    def __str__(self) -> str:
        return f"{_where(self.path, self.line)}: {self.message}"


@dataclass(eq=False)
class _Item:
    kind: str  # "blank" | "comment" | "section" | "ignored" | "entry"
    raw: str
    section: str | None  # the section this item belongs to (for a header: the one it opens)
    line: int
    entry: Entry | None = None

    def text(self) -> str:
        return self.entry.raw if self.entry is not None else self.raw


def _physical_lines(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos, n = 0, len(text)
    match = _LINE_RE.match
    while pos < n:
        m = match(text, pos)
        assert m is not None  # the pattern matches the empty string
        out.append((m.group(1), m.group(2)))
        pos = m.end()
    return out


def _is_comment(content: str) -> bool:
    s = content.lstrip(WHITESPACE)
    return bool(s) and s[0] in COMMENTS


def _continues(content: str) -> bool:
    return (len(content) - len(content.rstrip("\\"))) % 2 == 1


def _join(raw: str) -> tuple[str, list[int], list[bool]]:
    """Join one logical line's raw text as systemd does; return it, each char's raw offset, and which are synthetic."""
    chars: list[str] = []
    idx: list[int] = []
    synth: list[bool] = []
    off = 0
    first = True
    for content, eol in _physical_lines(raw):
        if not (not first and _is_comment(content)):
            cont = _continues(content)
            body = content[:-1] if cont else content
            chars.append(body)
            idx.extend(range(off, off + len(body)))
            synth.extend([False] * len(body))
            if cont:
                chars.append(" ")
                idx.append(off + len(body))  # the backslash that became a space
                synth.append(True)
        first = False
        off += len(content) + len(eol)
    return "".join(chars), idx, synth


def _where(path: str | None, line: int) -> str:
    return f"{path or '<unit text>'}:{line}"


def _parse_items(
    body: str, *, path: str | None, section: str | None, first_line: int
) -> tuple[list[_Item], list[UnitWarning]]:
    items: list[_Item] = []
    warnings: list[UnitWarning] = []
    lines = _physical_lines(body)
    i, n = 0, len(lines)
    lineno = first_line
    while i < n:
        content, eol = lines[i]
        if _is_comment(content):
            items.append(_Item("comment", content + eol, section, lineno))
            i += 1
            lineno += 1
            continue
        start_line = lineno
        parts = [content + eol]
        cur = content
        while _continues(cur) and i + 1 < n:
            i += 1
            c2, e2 = lines[i]
            parts.append(c2 + e2)
            if not _is_comment(c2):
                cur = c2
        i += 1
        lineno += len(parts)
        raw = "".join(parts)
        joined = _join(raw)[0] if len(parts) > 1 or _continues(content) else content
        s = joined.strip(WHITESPACE)
        if not s:
            items.append(_Item("blank", raw, section, start_line))
            continue
        if any("\udc80" <= ch <= "\udcff" for ch in s):
            warnings.append(UnitWarning(path, start_line, "invalid UTF-8: systemd ignores this line"))
            items.append(_Item("ignored", raw, section, start_line))
            continue
        if s[0] == "[":
            if s[-1] != "]":
                raise UnitSyntaxError(
                    f"{_where(path, start_line)}: invalid section header {s!r}: it must end with ']' "
                    "(systemd refuses to load this file); close the bracket or remove the line"
                )
            section = s[1:-1]
            items.append(_Item("section", raw, section, start_line))
            continue
        if section is None:
            warnings.append(UnitWarning(path, start_line, "assignment outside of any section: systemd ignores it"))
            items.append(_Item("ignored", raw, section, start_line))
            continue
        eq = s.find("=")
        if eq < 0:
            warnings.append(UnitWarning(path, start_line, f"missing '=' in {s!r}: systemd ignores this line"))
            items.append(_Item("ignored", raw, section, start_line))
            continue
        if eq == 0:
            warnings.append(UnitWarning(path, start_line, f"missing key name before '=' in {s!r}: systemd ignores it"))
            items.append(_Item("ignored", raw, section, start_line))
            continue
        entry = Entry(section, s[:eq].rstrip(WHITESPACE), s[eq + 1 :].lstrip(WHITESPACE), start_line, path, raw)
        items.append(_Item("entry", raw, section, start_line, entry))
    return items, warnings


def _eol_of(raw: str) -> str:
    lines = _physical_lines(raw)
    return lines[-1][1] if lines else ""


class UnitFile:
    """A parsed unit or drop-in file that serializes back byte for byte."""

    def __init__(self, items: list[_Item], *, path: str | None, bom: str, warnings: list[UnitWarning]) -> None:
        self._items = items
        self._bom = bom
        self.path = path
        self.warnings = warnings

    # -- reading -------------------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, *, path: str | None = None) -> UnitFile:
        """Parse unit text; raise UnitSyntaxError where systemd would refuse to load the file."""
        bom = BOM if text.startswith(BOM) else ""
        items, warnings = _parse_items(text[len(bom) :], path=path, section=None, first_line=1)
        return cls(items, path=path, bom=bom, warnings=warnings)

    @classmethod
    def from_bytes(cls, data: bytes, *, path: str | None = None) -> UnitFile:
        """Parse file bytes; invalid UTF-8 survives as surrogate escapes and a BOM is kept as it was."""
        return cls.parse(data.decode("utf-8", "surrogateescape"), path=path)

    def serialize(self) -> str:
        """Return the text: the original, byte for byte, plus only the edits made."""
        return self._bom + "".join(it.text() for it in self._items)

    def to_bytes(self) -> bytes:
        """Return the file's bytes (the inverse of from_bytes)."""
        return self.serialize().encode("utf-8", "surrogateescape")

    @property
    def has_bom(self) -> bool:
        return bool(self._bom)

    def sections(self) -> list[str]:
        """Return section names in order of first appearance."""
        seen: dict[str, None] = {}
        for it in self._items:
            if it.kind == "section" and it.section is not None:
                seen.setdefault(it.section, None)
        return list(seen)

    def all_entries(self) -> list[Entry]:
        """Return every assignment of the file in order."""
        return [it.entry for it in self._items if it.entry is not None]

    def entries(self, section: str, key: str) -> list[Entry]:
        """Return every assignment of key in section, in file order."""
        return [e for e in self.all_entries() if e.section == section and e.key == key]

    def values(self, section: str, key: str) -> list[str]:
        """Return the values systemd keeps for a list key: an empty assignment resets it (not for dependencies)."""
        return _values(self.entries(section, key))

    def get(self, section: str, key: str) -> str | None:
        """Return the last assignment's value ("" when it resets to the default) or None when unset."""
        found = self.entries(section, key)
        return found[-1].value if found else None

    # -- editing ---------------------------------------------------------------------------------------
    def _index(self, entry: Entry) -> int:
        for i, it in enumerate(self._items):
            if it.entry is entry:
                return i
        raise ValueError(f"entry {entry.key}= (line {entry.line}) does not belong to this unit file")

    def edit_value(self, entry: Entry, edits: Sequence[Edit]) -> None:
        """Apply edits (offsets into entry.value) touching only the bytes inside the edited spans."""
        i = self._index(entry)
        value = entry.value
        ordered = sorted(edits, key=lambda e: (e.start, e.end))
        prev_end = 0
        for ed in ordered:
            if not 0 <= ed.start <= ed.end <= len(value) or ed.start < prev_end:
                raise ValueError(f"edit {ed} is outside {entry.key}={value!r} or overlaps another edit")
            if any(ch in ed.replacement for ch in "\r\n\x00"):
                raise UsageError(
                    f"{_where(self.path, entry.line)}: a value of {entry.key}= cannot contain a line break; "
                    "write it on one line"
                )
            prev_end = ed.end
        joined, idx, synth = _join(entry.raw)
        eq = joined.index("=", len(joined) - len(joined.lstrip(WHITESPACE)))
        vstart = eq + 1
        while vstart < len(joined) and joined[vstart] in WHITESPACE:
            vstart += 1
        assert joined[vstart : vstart + len(value)] == value, (joined, value)
        vend = vstart + len(value)
        raw = entry.raw
        expected = value
        for ed in reversed(ordered):
            js, je = vstart + ed.start, vstart + ed.end
            if je > js:
                rs = idx[js]
                r_end = idx[je - 1] + 1
                if synth[je - 1]:
                    # Removing the space a continuation made: join the lines so nothing dangles.
                    r_end = idx[je]
            elif not value:
                rs = idx[eq] + 1
            elif js < vend:
                rs = r_end = idx[js]
            else:
                rs = idx[vend - 1] + 1
            if je <= js:
                r_end = rs
            raw = raw[:rs] + ed.replacement + raw[r_end:]
            expected = expected[: ed.start] + ed.replacement + expected[ed.end :]
        self._replace_entry(i, entry, raw, expected.strip(WHITESPACE))

    def _replace_entry(self, i: int, entry: Entry, raw: str, expected: str) -> None:
        it = self._items[i]
        new_items, _ = _parse_items(raw, path=self.path, section=entry.section, first_line=entry.line)
        got = [x.entry for x in new_items if x.entry is not None]
        structure_ok = len(got) == 1 and all(x.kind in ("entry", "comment") for x in new_items)
        if not structure_ok or got[0].key != entry.key or got[0].value != expected:
            shown = got[0].value if len(got) == 1 else raw
            raise UsageError(
                f"{_where(self.path, entry.line)}: editing {entry.key}= would make systemd read {shown!r} "
                f"instead of {expected!r}; quote or escape the new text"
            )
        # The new text parses to one entry (comment lines inside a continuation stay part of it).
        entry.raw = raw
        entry.value = got[0].value
        it.raw = raw
        self._renumber()

    def set_value(self, entry: Entry, value: str) -> None:
        """Replace the whole value of an assignment, keeping the key and its spacing."""
        self.edit_value(entry, [Edit(0, len(entry.value), value)])

    def add_entry(self, section: str, key: str, value: str, *, after: Entry | None = None) -> Entry:
        """Add ``key=value`` after ``after`` (or at the end of section, creating it if missing); return it."""
        if not key or key != key.strip(WHITESPACE) or "=" in key or key[0] in COMMENTS + "[" or _has_break(key):
            raise UsageError(f"invalid key {key!r} for [{section}]; use a plain name like ExecStart")
        if _has_break(value) or _has_break(section) or "]" in section or "[" in section:
            raise UsageError(f"{key}={value!r} in [{section}] cannot contain a line break or brackets; fix it")
        eol = self._default_eol()
        if after is not None:
            pos = self._index(after) + 1
            if after.section != section:
                raise ValueError(f"cannot add [{section}] {key}= after an entry of [{after.section}]")
        else:
            pos = self._section_end(section)
        inserts: list[_Item] = []
        if pos < 0:  # no such section: append one at the end
            pos = len(self._items)
            if self._items:
                inserts.append(_Item("blank", eol, None, 0))
            inserts.append(_Item("section", f"[{section}]{eol}", section, 0))
        raw = f"{key}={value}{eol}"
        new_items, _ = _parse_items(raw, path=self.path, section=section, first_line=1)
        got = [x.entry for x in new_items if x.entry is not None]
        if len(new_items) != 1 or len(got) != 1 or got[0].key != key or got[0].value != value.strip(WHITESPACE):
            raise UsageError(f"{key}={value!r} would not read back as written; quote or escape the value")
        entry = got[0]
        inserts.append(new_items[0])
        if pos > 0:
            self._ensure_eol(pos - 1, eol)
        self._items[pos:pos] = inserts
        self._renumber()
        return entry

    def remove_entry(self, entry: Entry) -> None:
        """Remove an assignment with all its physical lines."""
        del self._items[self._index(entry)]
        self._renumber()

    # -- helpers ---------------------------------------------------------------------------------------
    def _default_eol(self) -> str:
        for it in self._items:
            eol = _eol_of(it.text())
            if eol:
                return eol
        return "\n"

    def _ensure_eol(self, i: int, eol: str) -> None:
        it = self._items[i]
        if not _eol_of(it.text()):
            if it.entry is not None:
                it.entry.raw += eol
            it.raw += eol

    def _section_end(self, section: str) -> int:
        """Return the index after the last entry (or header) of the last block of section, or -1."""
        end = -1
        in_block = False
        for i, it in enumerate(self._items):
            if it.kind == "section":
                in_block = it.section == section
                if in_block:
                    end = i + 1
            elif it.kind == "entry" and in_block:
                end = i + 1
        return end

    def _renumber(self) -> None:
        line = 1
        for it in self._items:
            it.line = line
            if it.entry is not None:
                it.entry.line = line
            line += len(_physical_lines(it.text()))


def _has_break(text: str) -> bool:
    return any(ch in text for ch in "\r\n\x00")


# Dependencies cannot be reset: systemd ignores an empty After=, Wants=... (load-fragment.c config_parse_unit_deps).
_DEPENDENCY_KEYS = frozenset(
    "Requires Requisite Wants BindsTo BindTo PartOf Upholds Conflicts Before After OnFailure OnSuccess "
    "PropagatesReloadTo PropagateReloadTo ReloadPropagatedFrom PropagateReloadFrom PropagatesStopTo "
    "StopPropagatedFrom JoinsNamespaceOf".split()
)


def _values(entries: Iterable[Entry]) -> list[str]:
    out: list[str] = []
    for e in entries:
        if e.value:
            out.append(e.value)
        elif not (e.section == "Unit" and e.key in _DEPENDENCY_KEYS):
            out.clear()
    return out


class MergedUnit:
    """A unit with its drop-ins applied in systemd's order (read-only view)."""

    def __init__(self, main: UnitFile, dropins: Sequence[UnitFile]) -> None:
        self.main = main
        self.dropins = list(dropins)

    @property
    def files(self) -> list[UnitFile]:
        return [self.main, *self.dropins]

    @property
    def warnings(self) -> list[UnitWarning]:
        return [w for f in self.files for w in f.warnings]

    def all_entries(self) -> list[Entry]:
        """Return every assignment of the main file then of each drop-in, in order."""
        return [e for f in self.files for e in f.all_entries()]

    def entries(self, section: str, key: str) -> list[Entry]:
        """Return every assignment of key in section across the files (Entry.path says which)."""
        return [e for f in self.files for e in f.entries(section, key)]

    def values(self, section: str, key: str) -> list[str]:
        """Return the list systemd ends up with (a drop-in's empty assignment resets earlier ones)."""
        return _values(self.entries(section, key))

    def get(self, section: str, key: str) -> str | None:
        """Return the winning value of a single-value key, or None when unset."""
        found = self.entries(section, key)
        return found[-1].value if found else None

    def owner(self, entry: Entry) -> UnitFile:
        """Return the file an entry belongs to (edit it there)."""
        for f in self.files:
            if any(e is entry for e in f.all_entries()):
                return f
        raise ValueError(f"entry {entry.key}= (line {entry.line}) is not part of this unit")

    def sections(self) -> list[str]:
        seen: dict[str, None] = {}
        for f in self.files:
            for s in f.sections():
                seen.setdefault(s, None)
        return list(seen)


def merged(main: UnitFile, dropins: Sequence[UnitFile]) -> MergedUnit:
    """Return the unit as systemd reads it: main file then drop-ins (already in systemd's order)."""
    return MergedUnit(main, dropins)


# -- drop-in lookup (systemd >= 246: name.d, template, dash prefixes, type.d) ----------------------------


def _name_dirs(name: str) -> list[str]:
    """Return the drop-in directory names systemd checks for name, most specific first (in one load dir)."""
    out = [name + ".d"]
    prefix, instance, utype = split_unit_name(name)
    if instance:  # an instance also reads its template's drop-ins
        out.extend(_name_dirs(f"{prefix}@.{utype}"))
    # "foo-bar-baz.service" also reads "foo-bar-.service.d" and "foo-.service.d" (a trailing dash is chopped once).
    p = prefix
    chopped = False
    while True:
        dash = p.rfind("-")
        if dash <= 0:
            return out
        if dash + 1 < len(p) or chopped:
            p = p[: dash + 1]
            break
        p = p[:dash]
        chopped = True
    built = f"{p}@{instance}.{utype}" if instance else f"{p}.{utype}"
    out.extend(_name_dirs(built))
    return out


def dropin_dirs(name: str, search_path: Sequence[str] = SYSTEM_UNIT_PATH) -> list[str]:
    """Return every directory whose ``*.conf`` files may be drop-ins of name, in systemd's priority order."""
    names = _name_dirs(name)
    utype = split_unit_name(name)[2]
    dirs = [f"{d.rstrip('/')}/{n}" for d in search_path for n in names]
    dirs += [f"{d.rstrip('/')}/{utype}.d" for d in search_path]
    return list(dict.fromkeys(dirs))


def select_dropins(dirs: Sequence[str], files: Iterable[str]) -> list[str]:
    """Pick the drop-ins among existing file paths: per file name the earliest dir wins; sorted by file name."""
    rank = {d: i for i, d in enumerate(dirs)}
    best: dict[str, tuple[int, str]] = {}
    for f in files:
        d, _, base = f.rpartition("/")
        if d not in rank or not base.endswith(".conf") or base.startswith("."):
            continue
        if base not in best or rank[d] < best[base][0]:
            best[base] = (rank[d], f)
    return [best[b][1] for b in sorted(best)]


def dropin_paths(
    name: str,
    search_path: Sequence[str] = SYSTEM_UNIT_PATH,
    *,
    files: Iterable[str] | None = None,
    root: str | os.PathLike[str] = "/",
) -> list[str]:
    """Return the drop-in files systemd applies to name, in order; pure when files (existing paths) is given."""
    dirs = dropin_dirs(name, search_path)
    if files is None:
        files = _list_conf_files(dirs, Path(root))
    return select_dropins(dirs, files)


def unit_from_files(name: str, files: Mapping[str, str], search_path: Sequence[str] = SYSTEM_UNIT_PATH) -> MergedUnit:
    """Return the merged unit from a mapping path -> text (no file access); raise InputError if it has no file."""
    prefix, instance, utype = split_unit_name(name)
    candidates = [name] + ([f"{prefix}@.{utype}"] if instance is not None else [])
    main_path = next(
        (p for n in candidates for d in search_path if (p := f"{d.rstrip('/')}/{n}") in files),
        None,
    )
    if main_path is None:
        raise InputError(f"unit {name} has no unit file in {', '.join(search_path)}; check the name or install it")
    if files[main_path] == "":
        raise InputError(f"unit {name} is masked ({main_path} is empty or /dev/null); unmask it first")
    main = UnitFile.parse(files[main_path], path=main_path)
    dropins = [UnitFile.parse(files[p], path=p) for p in dropin_paths(name, search_path, files=files.keys())]
    return MergedUnit(main, dropins)


# -- the thin file-reading edge ------------------------------------------------------------------------


def _under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _list_conf_files(dirs: Sequence[str], root: Path) -> list[str]:
    out: list[str] = []
    for d in dirs:
        try:
            names = sorted(os.listdir(_under(root, d)))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise InputError(f"cannot list drop-in directory {d}: {exc.strerror}; check its permissions") from exc
        out.extend(f"{d}/{n}" for n in names if n.endswith(".conf") and not n.startswith("."))
    return out


def load_unit(
    name: str, *, root: str | os.PathLike[str] = "/", search_path: Sequence[str] = SYSTEM_UNIT_PATH
) -> MergedUnit:
    """Read a unit and its drop-ins from the load path under root (root="/" is the live system)."""
    from unitctl.fsutil import read_input

    rootp = Path(root)
    prefix, instance, utype = split_unit_name(name)
    wanted = [f"{d.rstrip('/')}/{n}" for d in search_path for n in [name, f"{prefix}@.{utype}"][: 2 if instance else 1]]
    wanted += _list_conf_files(dropin_dirs(name, search_path), rootp)
    files: dict[str, str] = {}
    for w in wanted:
        host = _under(rootp, w)
        if host.is_symlink() and os.path.realpath(host) == os.devnull:
            files[w] = ""  # masked
            continue
        if not host.is_file():
            continue
        files[w] = read_input(host, what="unit file").decode("utf-8", "surrogateescape")
    return unit_from_files(name, files, search_path)
