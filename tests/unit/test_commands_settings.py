"""Typed settings of the commands layer: flags over unitctl.toml, one declaration per shared option."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unitctl import cli
from unitctl.commands.settings import (
    ApplySettings,
    HistorySettings,
    RollbackSettings,
    StatusSettings,
    load,
    schema,
    unit_or_none,
)
from unitctl.errors import UsageError


def test_flags_win_the_file_fills_the_rest_and_paths_are_relative_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "unitctl.toml").write_text(
        'name = "shop"\n[apply]\nguarded = true\nready_timeout = 7\nrepo = "app"\nstrategy = "restart"\n'
    )
    monkeypatch.chdir(tmp_path)
    s = load(ApplySettings, "apply", name=None, guarded=None, ready_timeout=3.0, repo=None, strategy=None, dry_run=True)
    assert (s.name, s.guarded, s.ready_timeout, s.strategy, s.dry_run) == ("shop", True, 3.0, "restart", True)
    assert s.repo == str(tmp_path / "app") and s.unit == "shop.service"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "other"  # type: ignore[misc]


def test_each_table_keeps_its_keys_and_configs_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # [rollback] has no 'guarded': the message and its list of known keys are config.py's.
    (tmp_path / "unitctl.toml").write_text("[rollback]\nguarded = true\n")
    with pytest.raises(UsageError, match=re.escape("unknown key 'guarded' in [rollback]")) as err:
        load(RollbackSettings, "rollback", name="app")
    assert (
        err.value.hint
        == "known keys: backend, build_cmd, history_dir, hook_timeout, name, post_ready_cmd, pre_switch_cmd, "
        "ready_interval, ready_timeout, ready_url, repo"
    )
    (tmp_path / "unitctl.toml").write_text("[status]\nready_timeout = 0\n")
    with pytest.raises(UsageError, match="unknown key 'ready_timeout' in \\[status\\]"):
        load(StatusSettings, "status", name="app")
    (tmp_path / "unitctl.toml").write_text("[apply]\nready_timeout = 0\n")
    with pytest.raises(UsageError, match="ready_timeout in \\[apply\\] must be a finite number above 0, not 0"):
        load(ApplySettings, "apply", name="app")
    # [history] reads the keys [status] reads, as it always did.
    assert (
        schema(HistorySettings)
        == schema(StatusSettings)
        == {
            "name": schema(ApplySettings)["name"],
            "history_dir": schema(ApplySettings)["history_dir"],
            "ready_url": schema(ApplySettings)["ready_url"],
            "backend": schema(ApplySettings)["backend"],
        }
    )


def test_a_unit_is_required_and_validated() -> None:
    with pytest.raises(UsageError, match="which unit"):
        _ = StatusSettings().unit
    assert unit_or_none("bad name!") is None and unit_or_none(None) is None and unit_or_none("a@1") == "a@1.service"


@pytest.mark.parametrize("option", ["--workers", "--max-workers", "--no-preload", "--app", "--bind", "--json",
                                    "--ready-url", "--history-dir", "--backend", "--repo", "--build-cmd"])  # fmt: skip
def test_an_option_several_commands_take_has_one_help_text(option: str) -> None:
    helps = {}
    for command in ("render", "rewrite", "diff", "verify", "apply", "rollback", "status", "history"):
        out = CliRunner().invoke(cli.app, [command, "--help"], terminal_width=400).output
        line = next((" ".join(ln.split()) for ln in out.splitlines() if ln.strip().startswith(option + " ")), None)
        if line is not None:
            helps[command] = line
    assert len(helps) >= 2, helps
    assert len(set(helps.values())) == 1, helps
