"""Every command example in README.md and docs/*.md runs as written, and every relative link leads somewhere.

Each fenced ``sh`` or ``console`` block is split into command lines (``\\`` continuations joined; in a ``console``
block a command starts with ``$ `` and the lines up to the next ``$ `` are its output). Each command is classified
by RULES below, first match wins:

- ``run``: runs here, offline, as ``python -m unitctl`` against fixture files (below), and must exit as the doc says:
  0 unless the command's own comment says ``exit N``; in a ``console`` block its shown output must be exactly what
  it prints (stdout, then stderr).
- ``elsewhere``: needs the sandbox's systemd or a real server; the rule names why and which test covers it.
- no rule matches: the test fails, naming the file and line, so a new kind of example gets a rule (or a fix).

The fixture a ``run`` command sees, in a fresh temporary directory each time:

- ``ROOT/etc/systemd/system/shop.service`` and ``ROOT/usr/lib/systemd/system/shop.service``: the example app's unit
  (``examples/app/app.service.in``: ``--preload``, one worker) with its placeholders filled in for ``shop``
  (``/srv/shop/current``, ``/srv/shop/venv``, port 8000), as the docs' examples say;
- the working directory holds ``shop.service`` and ``candidate.txt``: the same unit with ``--preload`` dropped.

An argument under ``/etc/systemd/``, ``/usr/lib/systemd/`` or ``/mnt/image`` is read under ROOT instead, and
``unitctl diff`` without ``--root`` gets ``--root ROOT``: the only changes made to a command before it runs.
ROOT is replaced by nothing in what it prints.

Each fenced ``toml`` block is a ``unitctl.toml`` example: it must load, and one with a ``[render]`` table must render
with no flags. A second part resolves every relative link of README.md and docs/*.md, anchors included.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
APP_UNIT = REPO_ROOT / "examples" / "app" / "app.service.in"

# Paths a command example names on the server, read under the fixture root instead.
MAPPED_PREFIXES = ("/etc/systemd/", "/usr/lib/systemd/", "/mnt/image")

# Files the README links to that other branches add at the same time as this one (issue 12). Checked like any
# other link once they exist; while one is missing, a link to it (without an anchor) is allowed.
ON_OTHER_BRANCHES: set[str] = set()  # docs another branch adds: a link to one may dangle until it lands

_OFFLINE_UNITCTL = r"unitctl (render|rewrite|diff|verify --offline)\b|unitctl( [a-z-]+)? (--help|-h)$"
_SERVER = "needs a real server (root, /opt, a remote host or the network)"

# (pattern matched at the start of the command, "run" or "elsewhere", why it does not run here)
RULES: list[tuple[str, str, str]] = [
    (_OFFLINE_UNITCTL, "run", ""),
    (
        r"unitctl verify\b",
        "elsewhere",
        "checks the programs, users and directories the unit names on this machine, which only the server has "
        "(verify --offline is the variant that runs here)",
    ),
    (
        r"(exec )?unitctl (apply|rollback|status|history|fetch|deploy)\b",
        "elsewhere",
        "drives a live systemd and a checkout: run against the sandbox by tests/integration/ "
        "(test_apply_real.py, test_status_real.py and the others)",
    ),
    (
        r"(\S*/)?update_systemd_unit\.sh\b",
        "elsewhere",
        "deploys with a live systemd: tests/integration/test_update_script_real.py runs it in the sandbox",
    ),
    (r"bash scripts/demo\.sh\b", "elsewhere", "boots the sandbox: tests/integration/test_demo_real.py runs it"),
    (r"bash scripts/test\.sh\b", "elsewhere", "runs the whole suite, this test included"),
    (r"bash scripts/bootstrap\.sh\b", "elsewhere", "creates the virtual environment this test runs in"),
    (
        r"bash scripts/build\.sh\b",
        "elsewhere",
        "builds the wheel: tests/integration/test_install_real.py builds and installs it",
    ),
    (r"(bash )?(\S*/)?install-server\.sh\b", "elsewhere", _SERVER),
    (
        r"ansible-playbook\b",
        "elsewhere",
        "drives real hosts: tests/integration/test_fleet_real.py runs the playbooks against three sandboxed hosts",
    ),
    (r"bash scripts/demo-fleet\.sh\b", "elsewhere", "boots three sandboxes: tests/integration/test_fleet_real.py"),
    (r"pip wheel\b", "elsewhere", "downloads every dependency: tests/integration/test_install_real.py builds one"),
    (r"(scp|ssh|pipx|install|sudo|git|systemctl|journalctl)\b", "elsewhere", _SERVER),
    (
        r"(\.venv/bin/)?python3? bench/",
        "elsewhere",
        "a benchmark: boots its own sandbox for minutes, prints figures, asserts nothing",
    ),
    (
        r"(\.venv/bin/)?python3? scripts/gen_gunicorn_options\.py\b",
        "elsewhere",
        "rewrites a source file; tests/unit/test_gunicorn.py checks the committed table against Gunicorn's",
    ),
    (r"(\.venv/bin/)?(pytest|ruff|mypy)\b", "elsewhere", "the test tools themselves (scripts/test.sh runs them)"),
]


@dataclass(frozen=True)
class Example:
    """One command line of a docs example, with the output its block shows (console blocks only)."""

    file: str
    line: int
    command: str
    output: str | None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.command}"


_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")


def _blocks(path: Path) -> list[tuple[str, int, list[str]]]:
    """Return each fenced block of PATH as (language, line of its first content line, content lines)."""
    blocks: list[tuple[str, int, list[str]]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m["indent"]), m["fence"], m["lang"]
        start, body = i + 2, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        blocks.append((lang, start, body))
        i += 1
    return blocks


def _sh_commands(body: list[str], first: int) -> list[tuple[int, str]]:
    """Return (line number, command) for each command of an sh block, continuations joined."""
    out: list[tuple[int, str]] = []
    pending, at = "", 0
    for n, line in enumerate(body, first):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            at = n
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((at, (pending + line).strip()))
        pending = ""
    return out


def _console_commands(body: list[str], first: int) -> list[tuple[int, str, str]]:
    """Return (line number, command, shown output) for each ``$ `` command of a console block."""
    out: list[tuple[int, str, str]] = []
    i = 0
    while i < len(body):
        if not body[i].startswith("$ "):
            i += 1
            continue
        at, command = first + i, body[i][2:]
        while command.endswith("\\") and i + 1 < len(body):
            i += 1
            command = command[:-1] + " " + body[i].strip()
        i += 1
        shown: list[str] = []
        while i < len(body) and not body[i].startswith("$ "):
            shown.append(body[i])
            i += 1
        out.append((at, command.strip(), "".join(line + "\n" for line in shown)))
    return out


def collect_examples() -> list[Example]:
    """Return every command example of README.md and docs/*.md."""
    examples: list[Example] = []
    for path in DOCS:
        rel = str(path.relative_to(REPO_ROOT))
        for lang, first, body in _blocks(path):
            if lang == "sh":
                examples += [Example(rel, n, cmd, None) for n, cmd in _sh_commands(body, first)]
            elif lang == "console":
                examples += [Example(rel, n, cmd, shown) for n, cmd, shown in _console_commands(body, first)]
    return examples


def split_comment(command: str) -> tuple[str, str]:
    """Return COMMAND's code and its trailing comment (a ``#`` that starts a word outside quotes)."""
    quote, i = "", 0
    while i < len(command):
        c = command[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"':
                i += 1
        elif c in "'\"":
            quote = c
        elif c == "\\":
            i += 1
        elif c == "#" and (i == 0 or command[i - 1] in " \t"):
            return command[:i].rstrip(), command[i + 1 :].strip()
        i += 1
    return command, ""


def classify(command: str) -> tuple[str, str]:
    """Return ("run", "") or ("elsewhere", why) for COMMAND; raise LookupError when no rule matches."""
    words = shlex.split(split_comment(command)[0])
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        words.pop(0)  # VAR=value before the program
    plain = shlex.join(words)
    for pattern, kind, why in RULES:
        if re.match(pattern, plain):
            return kind, why
    raise LookupError(plain)


def expected_exit(command: str) -> int:
    """Return the exit code the command's own comment states (``# … exit N …``), else 0."""
    m = re.search(r"\bexit (\d+)\b", split_comment(command)[1])
    return int(m.group(1)) if m else 0


EXAMPLES = collect_examples()


def _fixture(tmp: Path) -> tuple[Path, Path]:
    """Create the fixture root and working directory the module docstring describes."""
    unit = APP_UNIT.read_text(encoding="utf-8")
    for placeholder, value in {
        "@APP_DIR@": "/srv/shop/current",
        "@DATABASE_URL@": "sqlite:////srv/shop/shop.db",
        "@VENV@": "/srv/shop/venv",
        "@PORT@": "8000",
    }.items():
        unit = unit.replace(placeholder, value)
    root, work = tmp / "root", tmp / "work"
    for unit_dir in ("etc/systemd/system", "usr/lib/systemd/system"):
        (root / unit_dir).mkdir(parents=True)
        (root / unit_dir / "shop.service").write_text(unit, encoding="utf-8")
    work.mkdir()
    candidate = unit.replace("--preload ", "")
    assert candidate != unit
    (work / "shop.service").write_text(candidate, encoding="utf-8")
    (work / "candidate.txt").write_text(candidate, encoding="utf-8")
    return root, work


def _argv(words: list[str], root: Path) -> list[str]:
    """Return the argv that runs WORDS against the fixture root."""

    def mapped(arg: str) -> str:
        option, eq, value = arg.partition("=") if arg.startswith("--") and "=" in arg else ("", "", arg)
        if value.startswith(MAPPED_PREFIXES):  # /mnt/image is an image's root: ROOT itself
            value = str(root) + value.removeprefix("/mnt/image")
        return option + eq + value

    argv = [mapped(w) for w in words[1:]]
    if argv and argv[0] == "diff" and not any(a == "--root" or a.startswith("--root=") for a in argv):
        argv += ["--root", str(root)]
    return [sys.executable, "-m", "unitctl", *argv]


def _env() -> dict[str, str]:
    """Return an environment in which unitctl prints what a user's terminal-less shell would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_") and k not in {"FORCE_COLOR", "CI"}}
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "120"
    return env


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_example_is_classified(example: Example) -> None:
    """Every command example matches a rule: it runs here, or the reason it cannot is written down."""
    try:
        kind, why = classify(example.command)
    except LookupError:
        pytest.fail(f"{example}: no rule in RULES says whether this runs offline or why not; add one")
    assert kind == "run" or why


def _runnable() -> list[Example]:
    """Return the examples a rule says run here."""
    out = []
    for example in EXAMPLES:
        try:
            kind, _ = classify(example.command)
        except LookupError:
            continue  # test_example_is_classified fails for it
        if kind == "run":
            out.append(example)
    return out


@pytest.mark.parametrize("example", _runnable(), ids=str)
def test_example_runs_as_written(example: Example, tmp_path: Path) -> None:
    """A runnable example exits as its doc says and prints what its doc shows."""
    root, work = _fixture(tmp_path)
    words = shlex.split(split_comment(example.command)[0])
    proc = subprocess.run(
        _argv(words, root), cwd=work, env=_env(), capture_output=True, text=True, timeout=120, check=False
    )
    printed = (proc.stdout + proc.stderr).replace(str(root), "")
    assert proc.returncode == expected_exit(example.command), f"{example}\n{printed}"
    if example.output is not None:
        assert printed == example.output, example


def test_tests_named_in_rules_exist() -> None:
    """A reason that names the test covering an example names a test file that exists."""
    named = {name for _, _, why in RULES for name in re.findall(r"test_\w+\.py", why)}
    assert named
    tests = {p.name for p in (REPO_ROOT / "tests").rglob("test_*.py")}
    assert named <= tests, sorted(named - tests)


def test_examples_are_found() -> None:
    """The extraction sees the README's two commands and at least one runnable example with shown output."""
    readme = [e.command for e in EXAMPLES if e.file == "README.md"]
    assert readme[:2] == [
        "bash scripts/demo.sh    # the main job end to end: boot a throwaway systemd, deploy good and broken "
        "releases, see the rollbacks",
        "bash scripts/test.sh    # the whole test suite: ruff, mypy, pytest (real systemd, Gunicorn, git, "
        "SQLite/PostgreSQL)",
    ]
    assert any(e.output for e in _runnable())


TOML_EXAMPLES = [
    pytest.param(body, id=f"{path.relative_to(REPO_ROOT)}:{first}")
    for path in DOCS
    for lang, first, body in _blocks(path)
    if lang == "toml"
]


@pytest.mark.parametrize("body", TOML_EXAMPLES)
def test_toml_example_is_a_valid_unitctl_toml(body: list[str], tmp_path: Path) -> None:
    """A unitctl.toml example loads; one with a [render] table renders with no flags at all."""
    from unitctl import config

    _, work = _fixture(tmp_path)
    (work / "unitctl.toml").write_text("".join(line + "\n" for line in body), encoding="utf-8")
    loaded = config.load(cwd=work)
    assert loaded is not None
    if "[render]" in body:
        proc = subprocess.run(
            [sys.executable, "-m", "unitctl", "render"],
            cwd=work, env=_env(), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "[Service]" in proc.stdout


# --- links ---------------------------------------------------------------------------------------------------

_LINK = re.compile(r"(?<!!)\[(?:[^\]`]|`[^`]*`)*\]\(([^)\s]+)\)")


def _prose(path: Path) -> str:
    """Return PATH's text without fenced blocks and code spans, where a [x](y) is not a link."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^\s*(```|~~~).*?^\s*\1", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "``", text)


def github_anchor(heading: str) -> str:
    """Return the anchor GitHub gives a Markdown heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Return every heading anchor of the Markdown file PATH, a repeated one numbered as GitHub numbers it."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    text = re.sub(r"^\s*(```|~~~).*?^\s*\1", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    for m in re.finditer(r"^#{1,6} +(.+?) *#*$", text, flags=re.M):
        slug = github_anchor(m.group(1))
        n = seen.get(slug, 0)
        out.add(f"{slug}-{n}" if n else slug)
        seen[slug] = n + 1
    return out


def _links() -> list[tuple[str, str]]:
    """Return (file, target) for every relative link of README.md and docs/*.md."""
    out = []
    for path in DOCS:
        for m in _LINK.finditer(_prose(path)):
            target = m.group(1)
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # not http:, https:, mailto:
                out.append((str(path.relative_to(REPO_ROOT)), target))
    return out


@pytest.mark.parametrize(("source", "target"), _links(), ids=lambda v: str(v))
def test_relative_link_resolves(source: str, target: str) -> None:
    """A relative link in the README or docs/ names an existing file, and an anchor an existing heading."""
    file_part, _, anchor = target.partition("#")
    dest = (REPO_ROOT / source).parent / file_part if file_part else REPO_ROOT / source
    rel = os.path.relpath(dest, REPO_ROOT)
    if not dest.exists() and rel in ON_OTHER_BRANCHES and not anchor:
        return
    assert dest.exists(), f"{source}: link to {target}: {rel} does not exist"
    if anchor:
        assert dest.suffix == ".md", f"{source}: link to {target}: an anchor into a file that is not Markdown"
        assert anchor in anchors(dest), f"{source}: link to {target}: {rel} has no heading with that anchor"


def test_anchor_rule_matches_github() -> None:
    """The anchor rule gives GitHub's anchors for the kinds of headings the docs use."""
    assert github_anchor("`unitctl render` — a unit from a template") == "unitctl-render--a-unit-from-a-template"
    assert github_anchor("Units outside /etc/systemd/system: where unitctl writes") == (
        "units-outside-etcsystemdsystem-where-unitctl-writes"
    )
    assert github_anchor('"Nothing to do" is checked against reality') == "nothing-to-do-is-checked-against-reality"
    assert github_anchor("Outcomes of `apply` and `rollback`") == "outcomes-of-apply-and-rollback"


def test_the_step_list_in_apply_md_is_the_engines() -> None:
    """docs/apply.md names the journal's steps in order: the engine's STEPS, not a copy that drifts."""
    from unitctl.deploy.model import STEPS

    text = (REPO_ROOT / "docs" / "apply.md").read_text(encoding="utf-8")
    m = re.search(r"Steps, in order: (.*?) \(`worktree`", text, flags=re.S)
    assert m is not None, "docs/apply.md lost its 'Steps, in order:' list"
    assert re.findall(r"`([a-z-]+)`", m.group(1)) == list(STEPS)
