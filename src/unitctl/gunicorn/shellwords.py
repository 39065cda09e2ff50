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
    words: list[ShellWord] = []
    i, n = 0, len(script)

    def bad(what: str) -> ShellSyntaxError:
        return ShellSyntaxError(
            f"the shell script {script!r} uses {what}, which unitctl does not rewrite",
            hint="run gunicorn directly in ExecStart= (WorkingDirectory=, Environment= replace cd and exports)",
        )

    while i < n:
        while i < n and script[i] in " \t":
            i += 1
        if i >= n:
            break
        if script[i] == "\n":
            if script[i:].strip() == "":
                break
            raise bad("several lines (commands)")
        start = i
        value: list[str] = []
        cmap: list[int] = []
        if script[i] == "#":
            raise bad("a comment")
        if script[i] == "~":
            raise bad("tilde expansion")
        while i < n and script[i] not in " \t\n":
            c = script[i]
            if c == "'":
                j = script.find("'", i + 1)
                if j < 0:
                    raise ShellSyntaxError(f"the shell script {script!r} has an unbalanced ' quote", hint="close it")
                value.extend(script[i + 1 : j])
                cmap.extend(range(i + 1, j))
                i = j + 1
            elif c == '"':
                j = i + 1
                while j < n and script[j] != '"':
                    if script[j] in "$`\\":
                        raise bad(f"{script[j]!r} inside double quotes")
                    j += 1
                if j >= n:
                    raise ShellSyntaxError(f'the shell script {script!r} has an unbalanced " quote', hint="close it")
                value.extend(script[i + 1 : j])
                cmap.extend(range(i + 1, j))
                i = j + 1
            elif c == "\\":
                if i + 1 >= n or script[i + 1] == "\n":
                    raise bad("a line continuation")
                value.append(script[i + 1])
                cmap.append(i + 1)
                i += 2
            elif c in _SHELL_SPECIAL:
                raise bad(f"{c!r} (pipes, lists, redirects, expansions or subshells)")
            elif c in _SHELL_GLOB or c in "{}":
                raise bad(f"{c!r} (globbing or brace expansion)")
            else:
                value.append(c)
                cmap.append(i)
                i += 1
        cmap.append(i if not cmap or script[i - 1] not in "'\"" else i - 1)
        words.append(ShellWord("".join(value), start, i, tuple(cmap)))
    return words


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
