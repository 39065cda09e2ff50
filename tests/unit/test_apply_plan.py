"""The pure decisions of a deploy: how to switch (restart / reload / nothing) and the plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from unitctl.apply import choose_action, make_plan
from unitctl.errors import UsageError
from unitctl.gitrepo import RollbackTarget
from unitctl.systemd.fake import failed_state, running_state


@pytest.mark.parametrize(
    ("strategy", "unit_changed", "code_changed", "preload", "active", "expected"),
    [
        ("restart", False, False, False, True, "none"),
        ("auto", False, False, True, True, "none"),
        ("restart", False, True, False, True, "restart"),
        ("auto", False, True, False, True, "reload"),
        ("auto", False, True, True, True, "restart"),  # preload: HUP keeps the old app
        ("auto", True, True, False, True, "restart"),  # unit changed: reload would not apply it
        ("reload", True, False, False, True, "restart"),
        ("reload", False, True, False, True, "reload"),
        ("auto", False, True, False, False, "restart"),  # not running: start it
        ("restart", False, False, False, False, "restart"),
    ],
)
def test_choose_action(
    strategy: str, unit_changed: bool, code_changed: bool, preload: bool, active: bool, expected: str
) -> None:
    action, why = choose_action(
        strategy,  # type: ignore[arg-type]
        unit_changed=unit_changed,
        code_changed=code_changed,
        preload=preload,
        was_active=active,
    )
    assert action == expected
    assert why


def test_explicit_reload_with_preload_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--preload"):
        choose_action("reload", unit_changed=False, code_changed=True, preload=True, was_active=True)


def test_plan_of_a_first_deploy() -> None:
    plan = make_plan(
        unit="app.service",
        unit_path=Path("/etc/systemd/system/app.service"),
        installed=None,
        candidate=b"[Service]\n",
        state=failed_state("app.service"),
        deployed_rev=None,
        rollback=RollbackTarget("a" * 40, "HEAD~1"),
        to_rev="b" * 40,
        preload=False,
        strategy="restart",
    )
    assert plan.first_deploy and plan.unit_changed and plan.code_changed and plan.changes
    assert (plan.from_rev, plan.rollback_source, plan.action) == ("a" * 40, "HEAD~1", "restart")
    assert plan.installed_sha256 is None


def test_plan_when_everything_is_deployed() -> None:
    plan = make_plan(
        unit="app.service",
        unit_path=Path("/etc/systemd/system/app.service"),
        installed=b"[Service]\n",
        candidate=b"[Service]\n",
        state=running_state("app.service"),
        deployed_rev="b" * 40,
        rollback=RollbackTarget("b" * 40, "history"),
        to_rev="b" * 40,
        preload=False,
        strategy="auto",
    )
    assert not plan.changes and not plan.unit_changed and not plan.code_changed
    assert plan.installed_sha256 == plan.candidate_sha256


def test_unknown_running_code_counts_as_changed() -> None:
    plan = make_plan(
        unit="app.service",
        unit_path=Path("/x/app.service"),
        installed=b"u",
        candidate=b"u",
        state=running_state("app.service"),
        deployed_rev=None,
        rollback=RollbackTarget("a" * 40, "ORIG_HEAD"),
        to_rev="b" * 40,
        preload=True,
        strategy="auto",
    )
    assert plan.code_changed and plan.action == "restart"
