"""unitctl.toml loading: shape checks, per-table validation, relative paths, flags win."""

from __future__ import annotations

from pathlib import Path

import pytest

from unitctl import config
from unitctl.errors import ExitCode, InputError, UsageError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "unitctl.toml"
    path.write_text(text)
    return path


def test_missing_default_file_is_no_config(tmp_path: Path) -> None:
    assert config.load(cwd=tmp_path) is None


def test_missing_explicit_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        config.load(tmp_path / "nope.toml")
    assert err.value.exit_code == ExitCode.REFUSED


def test_render_table_merges_top_level_name(tmp_path: Path) -> None:
    write(
        tmp_path,
        'name = "shop"\n[render]\napp = "shop.wsgi:application"\nworkers = 3\nbind = "127.0.0.1:9000"\n'
        'env = {DJANGO_SETTINGS_MODULE = "shop.settings"}\ntemplate = "deploy/unit.j2"\n',
    )
    cfg = config.load(cwd=tmp_path)
    assert cfg is not None
    values = cfg.section("render", config.RENDER_SCHEMA)
    assert values == {
        "name": "shop",
        "app": "shop.wsgi:application",
        "workers": 3,
        "bind": ["127.0.0.1:9000"],
        "env": {"DJANGO_SETTINGS_MODULE": "shop.settings"},
        "template": str(tmp_path / "deploy/unit.j2"),
    }


def test_table_value_beats_top_level(tmp_path: Path) -> None:
    write(tmp_path, 'name = "a"\n[render]\nname = "b"\n')
    cfg = config.load(cwd=tmp_path)
    assert cfg is not None
    assert cfg.section("render", config.RENDER_SCHEMA)["name"] == "b"


def test_unknown_key_names_it(tmp_path: Path) -> None:
    write(tmp_path, "[render]\nwrokers = 3\n")
    cfg = config.load(cwd=tmp_path)
    assert cfg is not None
    with pytest.raises(UsageError, match="unknown key 'wrokers' in \\[render\\]") as err:
        cfg.section("render", config.RENDER_SCHEMA)
    assert err.value.exit_code == ExitCode.USAGE
    assert "workers" in str(err.value)  # the hint lists the known keys


def test_other_tables_are_not_validated_by_render(tmp_path: Path) -> None:
    write(tmp_path, '[render]\napp = "a:b"\n[apply]\nhealth_url = "http://x/"\n')
    cfg = config.load(cwd=tmp_path)
    assert cfg is not None
    assert cfg.section("render", config.RENDER_SCHEMA) == {"app": "a:b"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[rendr]\napp = 'a:b'\n", "unknown table \\[rendr\\]"),
        ("workers = 3\n", "unknown top-level key 'workers'"),
        ("[render\n", "invalid TOML"),
    ],
)
def test_bad_shape_fails_on_load(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, text)
    with pytest.raises(UsageError, match=message):
        config.load(cwd=tmp_path)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("workers = 0", "workers"),
        ("workers = true", "workers"),
        ('workers = "many"', "workers"),
        ("max_workers = -1", "max_workers"),
        ("bind = [1, 2]", "bind"),
        ('socket = "yes"', "socket"),
        ("app = 3", "app"),
        ("env = {A = 1}", "env"),
    ],
)
def test_wrong_types_name_the_key(tmp_path: Path, line: str, key: str) -> None:
    write(tmp_path, f"[render]\n{line}\n")
    cfg = config.load(cwd=tmp_path)
    assert cfg is not None
    with pytest.raises(UsageError, match=f"{key} in \\[render\\] must be"):
        cfg.section("render", config.RENDER_SCHEMA)


def test_workers_auto_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, '[render]\nworkers = "auto"\nmax_workers = 8\n')
    cfg = config.load(cwd=tmp_path)
    assert cfg is not None
    assert cfg.section("render", config.RENDER_SCHEMA) == {"workers": "auto", "max_workers": 8}


def test_flags_win_and_unset_flags_fall_back() -> None:
    merged = config.merge(
        {"workers": 5, "app": None, "bind": [], "socket": None},
        {"workers": 3, "app": "a:b", "bind": ["unix:/run/a/a.sock"]},
    )
    assert merged == {"workers": 5, "app": "a:b", "bind": ["unix:/run/a/a.sock"], "socket": None}


def test_rewrite_table_is_not_a_thing(tmp_path: Path) -> None:
    # rewrite/diff take operations from flags only; a table that looked effective but was ignored would mislead.
    write(tmp_path, "[rewrite]\nworkers = 3\n")
    with pytest.raises(UsageError, match="unknown table \\[rewrite\\]"):
        config.load(cwd=tmp_path)


def test_removed_current_directory_means_no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert config.load() is None
