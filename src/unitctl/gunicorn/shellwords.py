"""Shell and shlex word splitting that keeps raw spans, so a rewrite can change exactly the bytes of one word.

Upstream: POSIX sh's token recognition (for ``sh -c SCRIPT``, plain lists of words only) and Python's
``shlex.split`` in POSIX mode (how Gunicorn splits ``GUNICORN_CMD_ARGS``).
"""

from __future__ import annotations

from dataclasses import dataclass

from unitctl.gunicorn.options import GunicornArgsError

__all__ = ["ShellSyntaxError", "ShellWord", "shell_split", "shlex_words"]


class ShellSyntaxError(GunicornArgsError):
    """A ``sh -c`` script that uses shell syntax unitctl does not rewrite (expansions, pipes, &&, redirects...)."""


@dataclass(frozen=True)
class ShellWord:
    """A word of a shell or shlex string: its value, its raw span, and the raw index of every value character."""

    value: str
    start: int
    end: int
    charmap: tuple[int, ...]  # raw index of value[i]; charmap[len(value)] = raw index just after the last character


_SHELL_SPECIAL = set("|&;<>()$`")
_SHELL_GLOB = set("*?[")


def shell_split(script: str) -> list[ShellWord]:
    """Split a POSIX sh script that is a plain list of words; raise ShellSyntaxError on anything else."""
    reader = _ShellReader(script)
    words: list[ShellWord] = []
    while (word := reader.next_word()) is not None:
        words.append(word)
    return words


class _ShellReader:
    """POSIX sh token recognition for a plain list of words: quotes and backslashes, nothing that expands."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.i = 0
        self.value: list[str] = []
        self.cmap: list[int] = []

    def bad(self, what: str) -> ShellSyntaxError:
        """Return the refusal of a script that uses ``what``."""
        return ShellSyntaxError(
            f"the shell script {self.script!r} uses {what}, which unitctl does not rewrite",
            hint="run gunicorn directly in ExecStart= (WorkingDirectory=, Environment= replace cd and exports)",
        )

    def next_word(self) -> ShellWord | None:
        """Return the next word, or None at the end of the script (blank lines after the command are fine)."""
        s, n = self.script, len(self.script)
        while self.i < n and s[self.i] in " \t":
            self.i += 1
        if self.i >= n or (s[self.i] == "\n" and s[self.i :].strip() == ""):
            return None
        first = {"\n": "several lines (commands)", "#": "a comment", "~": "tilde expansion"}
        if s[self.i] in first:
            raise self.bad(first[s[self.i]])
        start = self.i
        self.value, self.cmap = [], []
        while self.i < n and s[self.i] not in " \t\n":
            self._char(s[self.i])
        end = self.i
        self.cmap.append(end if not self.cmap or s[end - 1] not in "'\"" else end - 1)
        return ShellWord("".join(self.value), start, end, tuple(self.cmap))

    def _char(self, c: str) -> None:
        """Read the quoted run, escape or plain character at ``self.i``."""
        if c == "'":
            self._quoted(self.script.find("'", self.i + 1), "'")
        elif c == '"':
            self._quoted(self._double_quote_end(), '"')
        elif c == "\\":
            if self.i + 1 >= len(self.script) or self.script[self.i + 1] == "\n":
                raise self.bad("a line continuation")
            self._take(self.i + 1, self.i + 2)
            self.i += 2
        elif c in _SHELL_SPECIAL:
            raise self.bad(f"{c!r} (pipes, lists, redirects, expansions or subshells)")
        elif c in _SHELL_GLOB or c in "{}":
            raise self.bad(f"{c!r} (globbing or brace expansion)")
        else:
            self._take(self.i, self.i + 1)
            self.i += 1

    def _take(self, a: int, b: int) -> None:
        self.value.extend(self.script[a:b])
        self.cmap.extend(range(a, b))

    def _quoted(self, close: int, quote: str) -> None:
        """Take the characters between the quote at ``self.i`` and ``close`` (-1: never closed)."""
        if close < 0:
            raise ShellSyntaxError(f"the shell script {self.script!r} has an unbalanced {quote} quote", hint="close it")
        self._take(self.i + 1, close)
        self.i = close + 1

    def _double_quote_end(self) -> int:
        """Return the index of the closing double quote (-1: none); refuse what expands inside double quotes."""
        s, j = self.script, self.i + 1
        while j < len(s) and s[j] != '"':
            if s[j] in "$`\\":
                raise self.bad(f"{s[j]!r} inside double quotes")
            j += 1
        return j if j < len(s) else -1


def shlex_words(text: str) -> list[ShellWord]:
    """Split like shlex.split(text) (POSIX mode, no comments), keeping raw spans; ValueError on bad quoting."""
    words: list[ShellWord] = []
    i, n = 0, len(text)
    ws = " \t\r\n"
    while i < n:
        while i < n and text[i] in ws:
            i += 1
        if i >= n:
            break
        start = i
        value: list[str] = []
        cmap: list[int] = []
        while i < n and text[i] not in ws:
            c = text[i]
            if c == "'":
                j = text.find("'", i + 1)
                if j < 0:
                    raise ValueError("No closing quotation")
                value.extend(text[i + 1 : j])
                cmap.extend(range(i + 1, j))
                i = j + 1
            elif c == '"':
                j = i + 1
                while j < n and text[j] != '"':
                    if text[j] == "\\" and j + 1 < n and text[j + 1] in '"\\':
                        j += 1
                    value.append(text[j])
                    cmap.append(j)
                    j += 1
                if j >= n:
                    raise ValueError("No closing quotation")
                i = j + 1
            elif c == "\\":
                if i + 1 >= n:
                    raise ValueError("No escaped character")
                value.append(text[i + 1])
                cmap.append(i + 1)
                i += 2
            else:
                value.append(c)
                cmap.append(i)
                i += 1
        cmap.append(i if text[i - 1] not in "'\"" else i - 1)
        words.append(ShellWord("".join(value), start, i, tuple(cmap)))
    return words
