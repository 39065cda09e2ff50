"""The one switch for golden files: ``UNITCTL_REGEN_GOLDEN``, for the rewrite and the render goldens alike.

- unset: expected files are the oracle; a difference fails.
- ``1``: rewrite the expected files from the current code, but fail a case that changes kind (a rewrite that
  becomes a refusal, a render that gains or loses its ``.socket``): such a change is a behaviour change.
- ``kind``: rewrite them even when a case changes kind (asked for explicitly).

Under CI (CI=true) regeneration is refused: there the goldens judge the code, they are never rewritten by it.
Review every regenerated file by eye before committing it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

VALUES = ("1", "kind")
NEW = "new case"  # the kind of a case that has no expected files yet: its first regeneration is no kind change


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def regen_mode() -> str | None:
    """Return the regeneration mode asked for ("1" or "kind"), None when the goldens are the oracle."""
    mode = os.environ.get("UNITCTL_REGEN_GOLDEN", "")
    if not mode:
        return None
    if mode not in VALUES:
        pytest.fail(f"UNITCTL_REGEN_GOLDEN={mode!r}: use 1 (same kind only) or kind (allow kind changes)")
    if _in_ci():
        pytest.fail("UNITCTL_REGEN_GOLDEN is refused under CI: golden files judge the code there; unset it")
    return mode


def regenerate(case_dir: Path, files: Mapping[str, str | None], *, kind_before: str, kind_after: str) -> None:
    """Write ``files`` (name → text; None removes it) into ``case_dir``; fail a kind change unless asked for."""
    mode = regen_mode()
    assert mode is not None
    if kind_before not in (NEW, kind_after) and mode != "kind":
        pytest.fail(
            f"{case_dir.name}: regenerating would turn a {kind_before} into a {kind_after}; if that is intended, "
            "run with UNITCTL_REGEN_GOLDEN=kind and review the case"
        )
    for name, text in files.items():
        path = case_dir / name
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(text.encode("utf-8"))
