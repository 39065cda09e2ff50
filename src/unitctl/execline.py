"""systemd's command-line rules for ``ExecStart=`` and friends: split, quote, join.

Mirrors systemd 252 (``src/core/load-fragment.c:config_parse_exec`` over
``src/basic/extract-word.c:extract_first_word`` with ``EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE``):

- one value may hold several commands separated by a lone unquoted ``;`` (``\\;`` is a literal ``;``);
- the first word may start with the prefixes ``- @ : + ! !!`` in any order (one of ``+ ! !!``);
  ``@`` makes the second word argv[0];
- ``'...'`` and ``"..."`` are equivalent, may appear mid-word (``--bind="0.0.0.0:80"`` is one word)
  and C escapes (``\\n \\t \\\\ \\" \\' \\xHH \\uHHHH \\UHHHHHHHH \\OOO \\s``...) are processed inside and outside
  quotes; an unknown escape is kept verbatim with a warning (systemd's relaxed retry);
- unbalanced quotes reject the command (``ExecSyntaxError``);
- ``$VAR``/``${VAR}`` are left as written (systemd expands them at run time, see ``variables``);
- ``%`` specifiers are left as written (systemd resolves them at load time; ``%%`` is a literal ``%``);
- stricter than systemd on purpose: an executable written as a variable (``$FOO``, ``${FOO}``) is refused,
  since systemd never expands it and would look for a file named "$FOO"; and a command systemd would drop
  with only a log line (a bad command after ``-``, or an unbalanced quote in the first word of a later
  command) is refused as well, so nothing silently goes missing.

Word values are str; bytes produced by ``\\xHH``/octal escapes that are not UTF-8 are kept as
surrogate escapes (``bytes.decode(errors="surrogateescape")``), so nothing is lost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from unitctl.errors import UnitSyntaxError
from unitctl.unitfile import WHITESPACE

PREFIX_CHARS = "-@:+!"
_NAME_MAX = 255
_PATH_MAX = 4096

_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "s": " ",
}
_HEX = "0123456789abcdefABCDEF"
_OCT = "01234567"


class ExecSyntaxError(UnitSyntaxError):
    """A command line systemd would reject (unbalanced quotes, empty or invalid executable...)."""


@dataclass(frozen=True)
class Word:
    """One argument: its value after unquoting and C escapes, and the span of its raw text."""

    value: str  # after unquoting and C-escape processing (% specifiers and $VARs left as written)
    start: int  # span of the raw word in the source string; for the executable it starts after the prefix
    # characters when they are written plainly in front ("-/bin/x"), else it is the whole token ('"-/bin/x"')
    end: int


@dataclass(frozen=True)
class Command:
    """One command of an ``Exec*=`` value; ``words[0]`` is the executable path, prefixes stripped."""

    prefixes: str  # as written, e.g. "-", "+", "@-", "!!"
    words: tuple[Word, ...]
    start: int  # raw start of the first word, prefixes included
    end: int  # raw end of the last word (a following ";" is not included)
    warnings: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        """Return the executable as systemd stores it (``path=`` in ``systemctl show``)."""
        return path_simplify(self.words[0].value)

    @property
    def argv(self) -> list[str]:
        """Return the argument vector systemd passes (``argv[]=``; with ``@`` argv[0] is the second word)."""
        values = [w.value for w in self.words]
        return values[1:] if self.separate_argv0 else values

    @property
    def args(self) -> tuple[Word, ...]:
        """Return the words after argv[0] (the arguments proper)."""
        return self.words[2:] if self.separate_argv0 else self.words[1:]

    @property
    def ignore_failure(self) -> bool:
        """Return whether "-" makes a failure of this command count as success."""
        return "-" in self.prefixes

    @property
    def separate_argv0(self) -> bool:
        """Return whether "@" makes the second word argv[0]."""
        return "@" in self.prefixes

    @property
    def no_env_expand(self) -> bool:
        """Return whether ":" turns off $VAR expansion."""
        return ":" in self.prefixes

    @property
    def privileges(self) -> str:
        """Return "+", "!", "!!" or "" (the privilege prefix, at most one)."""
        n = self.prefixes.count("!")
        if n:
            return "!" * n
        return "+" if "+" in self.prefixes else ""


@dataclass(frozen=True)
class VarRef:
    """An environment variable reference inside a word value."""

    name: str
    start: int  # offsets into the word value
    end: int
    braced: bool  # ${NAME}: replaced in place, always one word
    whole_word: bool  # $NAME alone: replaced and split at whitespace (zero or more words)


class _Unbalanced(Exception):
    pass


class _BadEscape(Exception):
    pass


def _cunescape_one(s: str, i: int) -> tuple[bytes, int] | None:
    """Decode the escape whose letter is at s[i]; return (bytes, chars consumed) or None if systemd rejects it."""
    c = s[i]
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c].encode(), 1
    if c == "x":
        h = s[i + 1 : i + 3]
        if len(h) == 2 and all(ch in _HEX for ch in h) and h != "00":
            return bytes([int(h, 16)]), 3
        return None
    if c in "uU":
        n = 4 if c == "u" else 8
        h = s[i + 1 : i + 1 + n]
        if len(h) != n or not all(ch in _HEX for ch in h):
            return None
        cp = int(h, 16)
        if cp == 0 or cp > 0x10FFFF or (c == "U" and 0xD800 <= cp <= 0xDFFF):
            return None
        return chr(cp).encode("utf-8", "surrogatepass"), n + 1
    if c in _OCT:
        o = s[i : i + 3]
        if len(o) == 3 and all(ch in _OCT for ch in o):
            v = int(o, 8)
            if 0 < v <= 255:
                return bytes([v]), 3
        return None
    return None


def _enc(text: str) -> bytes:
    # Surrogate escapes stand for raw bytes (text decoded with errors="surrogateescape").
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _extract(s: str, pos: int, *, relax: bool) -> tuple[str, int, int, int, bool] | None:
    """Extract the word at or after pos: (value, raw start, raw end, next pos, had unknown escapes) or None."""
    n = len(s)
    while pos < n and s[pos] in WHITESPACE:
        pos += 1
    if pos >= n:
        return None
    start = pos
    out = bytearray()
    quote = ""
    unknown = False
    while pos < n:
        c = s[pos]
        if c == "\\":
            decoded, pos, kept = _escape(s, pos, relax=relax, quoted=bool(quote))
            out += decoded
            unknown = unknown or kept
            continue
        if quote:
            if c == quote:
                quote = ""
            else:
                out += _enc(c)
        elif c in "'\"":
            quote = c
        elif c in WHITESPACE:
            break
        else:
            out += _enc(c)
        pos += 1
    if quote:
        raise _Unbalanced
    end = pos
    while pos < n and s[pos] in WHITESPACE:
        pos += 1
    return out.decode("utf-8", "surrogateescape"), start, end, pos, unknown


def _escape(s: str, pos: int, *, relax: bool, quoted: bool) -> tuple[bytes, int, bool]:
    """Decode the backslash at ``s[pos]``: (bytes, next pos, True for an unknown escape kept verbatim)."""
    if pos + 1 >= len(s):
        # Trailing backslash: kept verbatim in relaxed mode unless inside quotes.
        if relax and not quoted:
            return b"\\", pos + 1, False
        raise _Unbalanced if quoted else _BadEscape
    dec = _cunescape_one(s, pos + 1)
    if dec is None:
        if not relax:
            raise _BadEscape
        return _enc("\\" + s[pos + 1]), pos + 2, True
    return dec[0], pos + 1 + dec[1], False


_UNBALANCED_TODO = "close the quote or escape it as \\' or \\\""


def _next_word(value: str, pos: int, *, relax_escapes: bool, subject: str) -> tuple[Word, int, str | None] | None:
    """Return the next word, the position after it and its separators, and a warning; None at the end."""
    warning = None
    try:
        r = _extract(value, pos, relax=False)
    except _Unbalanced:
        raise _error(value, "unbalanced quoting", _UNBALANCED_TODO, subject) from None
    except _BadEscape:
        if not relax_escapes:
            raise _error(
                value, "invalid escape sequence (systemd ignores the whole line)", "write a backslash as \\\\", subject
            ) from None
        # systemd retries with unknown escapes kept verbatim; still failing means an unbalanced quote.
        try:
            r = _extract(value, pos, relax=True)
        except (_Unbalanced, _BadEscape):
            raise _error(value, "unbalanced quoting", _UNBALANCED_TODO, subject) from None
        if r is not None:
            warning = f"unknown escape sequence kept verbatim (systemd warns): {r[0]!r}"
    if r is None:
        return None
    return Word(r[0], r[1], r[2]), r[3], warning


def split_words(value: str, *, relax_escapes: bool = True, what: str = "value", where: str | None = None) -> list[Word]:
    """Split a value into words by systemd's rules alone (quotes, C escapes; no ';', no prefixes).

    ``relax_escapes=True`` is how ``Exec*=`` reads words (an unknown escape is kept verbatim);
    ``Environment=`` uses ``relax_escapes=False``: there systemd ignores the whole line on an unknown escape.
    """
    out: list[Word] = []
    pos = 0
    try:
        while (r := _next_word(value, pos, relax_escapes=relax_escapes, subject=what)) is not None:
            out.append(r[0])
            pos = r[1]
    except ExecSyntaxError as exc:
        if where:
            raise ExecSyntaxError(f"{where}: {exc.message}") from None
        raise
    return out


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_env_name(name: str) -> bool:
    """Return True when ``name`` is a variable name systemd and a POSIX shell accept (env-util.c, portable form)."""
    return _ENV_NAME.fullmatch(name) is not None


def environment_words(value: str) -> list[Word]:
    """Split an ``Environment=`` value into words with spans, as systemd reads that directive.

    Unlike Exec lines, ';' is an ordinary character there, and an unknown escape or an unbalanced quote makes
    systemd ignore the whole line: that is an ExecSyntaxError here (callers that only report may skip the line).
    """
    try:
        return split_words(value, relax_escapes=False, what="Environment=")
    except ExecSyntaxError as exc:
        raise ExecSyntaxError(f"Environment={value!r} cannot be read: {exc}", hint="fix its quoting") from None


def environment_assignments(value: str) -> list[tuple[str, str, int]]:
    """Split an ``Environment=`` value into (name, value, word index) for each ``NAME=VALUE`` word, as systemd does."""
    out: list[tuple[str, str, int]] = []
    for k, w in enumerate(environment_words(value)):
        name, eq, val = w.value.partition("=")
        if eq and name:
            out.append((name, val, k))
    return out


def _error(value: str, what: str, todo: str, subject: str = "command line") -> ExecSyntaxError:
    return ExecSyntaxError(f"{subject} {value!r}: {what}; {todo}")


# Specifiers that systemd resolves to an absolute directory (systemd.unit(5), "Specifiers"): the home, state,
# cache, log, configuration, runtime and temporary directories, the credentials directory, the fragment's path
# and its directory. Every other specifier resolves to a name.
_PATH_SPECIFIERS = frozenset("hSCLEtTVdyY")


def _with_specifiers_resolved(path: str) -> str:
    """Return ``path`` with each specifier replaced by a stand-in of its kind, for the validity checks only."""

    def stand_in(m: re.Match[str]) -> str:
        spec = m.group(1)
        if spec == "%":
            return "%"
        return "/specifier" if spec in _PATH_SPECIFIERS else "specifier"

    return _SPEC_RE.sub(stand_in, path)


def _string_is_safe(p: str) -> bool:
    return not any(ord(ch) < 32 or ord(ch) == 127 or ch in "\\\"'" for ch in p)


def _filename_is_valid(p: str) -> bool:
    return p not in ("", ".", "..") and "/" not in p and len(p.encode("utf-8", "surrogateescape")) <= _NAME_MAX


def _path_is_valid(p: str) -> bool:
    if not p or len(p.encode("utf-8", "surrogateescape")) >= _PATH_MAX:
        return False
    return all(len(part.encode("utf-8", "surrogateescape")) <= _NAME_MAX for part in p.split("/"))


def path_simplify(p: str) -> str:
    """Drop duplicate slashes and "." components, like systemd's path_simplify() (".." is kept)."""
    if not p:
        return p
    absolute = p.startswith("/")
    parts = [x for x in p.split("/") if x not in ("", ".")]
    out = "/".join(parts)
    if absolute:
        return "/" + out
    return out or "."


def split(value: str, *, where: str | None = None) -> list[Command]:
    """Split an ``Exec*=`` value into commands exactly as systemd does; raise ExecSyntaxError where it refuses.

    ``where`` (e.g. ``entry.where``, "path:line") prefixes error messages so they name the file and line.
    """
    try:
        return _split(value)
    except ExecSyntaxError as exc:
        if where:
            raise ExecSyntaxError(f"{where}: {exc.message}") from None
        raise


def _split(value: str) -> list[Command]:
    commands: list[Command] = []
    pos = 0
    while True:
        first = _next_word(value, pos, relax_escapes=True, subject="command line")
        if first is None:
            return commands
        tok, pos, warn0 = first
        word0, tok_start, tok_end = tok.value, tok.start, tok.end
        if word0 == ";":
            continue  # a leading or repeated ";" separates nothing
        warnings = [warn0] if warn0 else []
        k = _prefix_length(word0)
        prefixes = word0[:k]
        path = word0[k:]
        raw_tok = value[tok_start:tok_end]
        w0_start = tok_start + k if raw_tok[:k] == prefixes else tok_start
        _check_path(value, prefixes, path)
        words = [Word(path, w0_start, tok_end)]
        pos, end, semicolon = _arguments(value, pos, words, warnings)
        if "@" in prefixes and len(words) < 2:
            raise _error(value, "'@' needs argv[0] as the word after the executable", "add it or drop the '@'")
        commands.append(Command(prefixes, tuple(words), tok_start, end, tuple(warnings)))
        if not semicolon:
            return commands


def _prefix_length(word0: str) -> int:
    """Return how many leading characters of the executable word are prefixes ('-', '@', ':' once; '+' or '!'/'!!')."""
    flags = {"-": False, "@": False, ":": False}
    priv = ""
    k = 0
    while k < len(word0):
        ch = word0[k]
        if ch in flags and not flags[ch]:
            flags[ch] = True
        elif ch == "+" and not priv:
            priv = "+"
        elif ch == "!" and priv in ("", "!"):
            priv += "!"
        else:
            break
        k += 1
    return k


def _arguments(value: str, pos: int, words: list[Word], warnings: list[str]) -> tuple[int, int, bool]:
    """Append the command's arguments from ``pos`` to ``words``; return (next pos, raw end, ended by ';')."""
    n = len(value)
    end = words[-1].end
    while pos < n:
        if value[pos] == ";" and (pos + 1 >= n or value[pos + 1] in WHITESPACE):
            pos += 1
            while pos < n and value[pos] in WHITESPACE:
                pos += 1
            return pos, end, True
        if value.startswith("\\;", pos) and (pos + 2 >= n or value[pos + 2] in WHITESPACE):
            words.append(Word(";", pos, pos + 2))
            end = pos + 2
            pos += 2
            while pos < n and value[pos] in WHITESPACE:
                pos += 1
            continue
        nxt = _next_word(value, pos, relax_escapes=True, subject="command line")
        if nxt is None:
            break
        word, pos, warn = nxt
        if warn:
            warnings.append(warn)
        words.append(word)
        end = word.end
    return pos, end, False


def _check_path(value: str, prefixes: str, path: str) -> None:
    """Refuse the executables systemd refuses (load-fragment.c), plus a variable, which it never expands."""
    if not path:
        raise _error(value, f"empty executable after prefixes {prefixes!r}", "give an absolute path after the prefixes")
    if path.startswith("$"):
        raise _error(value, f"the executable {path!r} is a variable, which systemd never expands", "write the path")
    # systemd resolves specifiers in the executable before it checks the path (config_parse_exec:
    # unit_path_printf, then path_is_absolute/filename_is_valid): %h/app/bin/gunicorn is an absolute path.
    path = _with_specifiers_resolved(path)
    valid = _path_is_valid(path) if path.startswith("/") else _filename_is_valid(path)
    if path[0] in PREFIX_CHARS and not valid:
        raise _error(
            value,
            f"repeated or conflicting prefix {path[0]!r} (use each of - @ : once and only one of + ! !!)",
            "fix the prefixes",
        )
    if not _string_is_safe(path):
        raise _error(value, f"executable {path!r} contains quotes, backslashes or control characters", "rename it")
    if path.endswith("/"):
        raise _error(value, f"executable {path!r} is a directory", "name the program file")
    if not valid:
        raise _error(value, f"{path!r} is neither an absolute path nor a plain file name", "use an absolute path")


_SAFE_RE = re.compile(r"[^\s'\"\\\x00-\x1f\x7f\ud800-\udfff]+")
_ESCAPE_OUT = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\a": "\\a", "\b": "\\b"}
_ESCAPE_OUT |= {"\f": "\\f", "\v": "\\v"}


def quote(arg: str, *, literal_percent: bool = False) -> str:
    """Return raw text that systemd reads back as exactly ``arg`` (one argument).

    ``%`` is a specifier character in unit files and is left alone, so ``%n`` still means the unit name;
    with ``literal_percent=True`` every ``%`` is doubled so systemd passes a literal ``%``
    (``split`` keeps ``%%`` as written, like every specifier). ``$`` is left alone as well.
    """
    if literal_percent:
        arg = arg.replace("%", "%%")
    if arg and arg != ";" and _SAFE_RE.fullmatch(arg):
        return arg
    out = ['"']
    for ch in arg:
        if ch in _ESCAPE_OUT:
            out.append(_ESCAPE_OUT[ch])
        elif ch == "\x00":
            raise ExecSyntaxError(f"argument {arg!r} contains a NUL character, which systemd cannot pass; remove it")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        elif 0xDC80 <= ord(ch) <= 0xDCFF:
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")  # a surrogate-escaped raw byte
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise ExecSyntaxError(f"argument {arg!r} contains a lone surrogate, which is not text; remove it")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def join(argv: Sequence[str], *, prefixes: str = "") -> str:
    """Return an ``Exec*=`` value whose single command has exactly this argv; refuse what cannot be written."""
    if not argv:
        raise ExecSyntaxError("empty command line; give at least the executable")
    exe = argv[0]
    raw0 = quote(exe)
    text = prefixes + raw0 + "".join(" " + quote(a) for a in argv[1:])
    cmds = split(text)
    got = [w.value for w in cmds[0].words] if len(cmds) == 1 else None
    if got != list(argv) or cmds[0].prefixes != prefixes:
        raise _error(text, f"cannot be written so that systemd runs exactly {list(argv)!r}", "use an absolute path")
    return text


_VAR_RE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def variables(word: str) -> list[VarRef]:
    """Return the ``$NAME``/``${NAME}`` references systemd would expand at run time in a word value."""
    refs: list[VarRef] = []
    for m in _VAR_RE.finditer(word):
        if m.group(0) == "$$":
            continue
        if m.group(1):
            refs.append(VarRef(m.group(1), m.start(), m.end(), True, False))
        else:
            whole = m.start() == 0 and m.end() == len(word)
            refs.append(VarRef(m.group(2), m.start(), m.end(), False, whole))
    return refs


def command_variables(cmd: Command) -> list[tuple[int, VarRef]]:
    """Return (index in ``cmd.words``, reference) for every variable in the command's arguments (none with ':')."""
    if cmd.no_env_expand:
        return []
    first = len(cmd.words) - len(cmd.args)
    return [(i, ref) for i, w in enumerate(cmd.words) if i >= first for ref in variables(w.value)]


_SPEC_RE = re.compile(r"%(.?)", re.DOTALL)


def specifiers(text: str) -> list[str]:
    """Return the ``%x`` specifiers in text (``%%`` is a literal percent and not listed)."""
    return [m.group(0) for m in _SPEC_RE.finditer(text) if m.group(1) != "%"]
