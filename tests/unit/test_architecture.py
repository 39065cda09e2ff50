"""docs/ARCHITECTURE.md says what the code is: every module has a row, and the interfaces are the code's own."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "unitctl"
DOC = ROOT / "docs" / "ARCHITECTURE.md"


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("gen_architecture", ROOT / "scripts" / "gen_architecture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_module_has_a_row_in_the_module_table() -> None:
    rows = set(re.findall(r"^\| `([^`]+)` \|", DOC.read_text(), flags=re.M))
    modules = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    # A row may cover a package ("systemd/") or a family ("commands/<verb>.py").
    patterns = [re.escape(r).replace(r"<verb>", "[a-z_]+") + ("" if r.endswith("/") else "$") for r in rows]
    missing = sorted(m for m in modules if not any(re.match(p, m) for p in patterns))
    assert missing == [], f"docs/ARCHITECTURE.md has no row for {missing}"
    gone = sorted(r for r in rows if r.endswith(".py") and "<" not in r and r not in modules)
    assert gone == [], f"docs/ARCHITECTURE.md names modules that do not exist: {gone}"


def test_the_interfaces_section_is_what_the_generator_makes_from_the_code() -> None:
    gen = _generator()
    text = DOC.read_text()
    assert gen.updated(text) == text, "stale: run .venv/bin/python scripts/gen_architecture.py"  # type: ignore[attr-defined]
