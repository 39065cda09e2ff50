"""Secret masking, unified diff and colour of unitctl diff (the pure core)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from unitctl import diff, masking
from unitctl.errors import ExitCode, InputError, NotGunicornError, UsageError
from unitctl.output import colour_enabled
from unitctl.rewrite import RewriteSpec

UNIT = """[Service]
Environment="DB_PASSWORD=hunter2" PLAIN=visible
Environment=API_KEY=abc123
Environment='aws_secret_access_key=zzz' \\
  GITHUB_TOKEN=ghp_x OTHER=fine
Environment=DATABASE_URL=postgres://app:s3cret@db/app
# Environment=OLD_PASSWORD=kept-in-comment-lines
ExecStart=/usr/bin/gunicorn --workers 3 app:app
"""


def test_mask_replaces_secret_values_only() -> None:
    masked = masking.mask_unit_text(UNIT)
    for secret in ("hunter2", "abc123", "zzz", "ghp_x", "s3cret"):
        assert secret not in masked.replace("kept-in-comment-lines", "")
    assert 'Environment="DB_PASSWORD=****" PLAIN=visible' in masked
    assert "Environment=API_KEY=****" in masked
    assert "Environment='aws_secret_access_key=****' \\\n" in masked
    assert "  GITHUB_TOKEN=**** OTHER=fine" in masked
    assert "postgres://app:****@db/app" in masked
    assert masked.endswith("ExecStart=/usr/bin/gunicorn --workers 3 app:app\n")


def test_mask_keeps_unrelated_lines_byte_for_byte() -> None:
    text = "[Service]\nExecStart=/bin/gunicorn --token-file x app:app\nDescription=KEY=value\n"
    assert masking.mask_unit_text(text) == text


@pytest.mark.parametrize("name", ["PASSWORD", "db_passwd", "Secret_Key", "SLACK_TOKEN", "MY_CREDENTIALS", "PRIVATE"])
def test_secret_names(name: str) -> None:
    assert masking.is_secret_name(name)


@pytest.mark.parametrize("name", ["DJANGO_SETTINGS_MODULE", "PATH", "WEB_CONCURRENCY", "LANG"])
def test_plain_names(name: str) -> None:
    assert not masking.is_secret_name(name)


def test_compare_masks_both_sides_and_reports_difference() -> None:
    old = "[Service]\nEnvironment=TOKEN=old\nExecStart=/g -w 9 a:b\n"
    new = "[Service]\nEnvironment=TOKEN=new\nExecStart=/g -w 5 a:b\n"
    result = diff.compare(old, new, old_name="a", new_name="b")
    text = "".join(result.lines)
    assert result.differs
    assert "old" not in text.replace("--- a", "") and "new" not in text
    assert "-ExecStart=/g -w 9 a:b\n" in text and "+ExecStart=/g -w 5 a:b\n" in text


def test_secret_only_change_still_differs_without_printing_it() -> None:
    old = "[Service]\nEnvironment=SECRET_KEY=one\n"
    new = "[Service]\nEnvironment=SECRET_KEY=two\n"
    result = diff.compare(old, new, old_name="a", new_name="b")
    assert result.differs and result.secrets_only
    assert result.lines == ()
    assert result.summary == "secret values differ (masked)"


def test_identical_units() -> None:
    result = diff.compare("[Unit]\n", "[Unit]\n", old_name="a", new_name="b")
    assert not result.differs and result.lines == () and result.summary == "no changes"


def test_missing_final_newline_is_marked() -> None:
    lines = diff.unified("a\n", "a\nb", old_name="x", new_name="y")
    assert lines[-1] == "+b\n\\ No newline at end of file\n"


def test_colour_only_when_enabled() -> None:
    lines = ["--- a\n", "+++ b\n", "@@ -1 +1 @@\n", "-x\n", "+y\n", " z\n"]
    assert diff.colourize(lines, False) == lines
    coloured = diff.colourize(lines, True)
    assert coloured[3] == "\x1b[31m-x\x1b[0m\n" and coloured[4] == "\x1b[32m+y\x1b[0m\n"
    assert coloured[5] == " z\n"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_needs_a_tty_and_no_NO_COLOR() -> None:
    assert colour_enabled(_Tty(), {})
    assert not colour_enabled(_Tty(), {"NO_COLOR": "1"})
    assert not colour_enabled(io.StringIO(), {})
    # FORCE_COLOR colours a pipe (a CI log); NO_COLOR still wins; FORCE_COLOR=0 forces nothing.
    assert colour_enabled(io.StringIO(), {"FORCE_COLOR": "1"})
    assert not colour_enabled(io.StringIO(), {"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert not colour_enabled(io.StringIO(), {"FORCE_COLOR": "0"})


# --- the installed unit (with drop-ins, under --root) against the desired one ----------------------

INSTALLED = """[Service]
Type=notify
User=shop
Environment=DB_PASSWORD=hunter2 MODE=prod
ExecStart=/srv/venv/bin/gunicorn -w 9 shop:app
"""


def make_root(tmp_path: Path, dropin: str | None = "[Service]\nEnvironment=EXTRA=1\n") -> Path:
    root = tmp_path / "root"
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    (unit_dir / "shop.service").write_text(INSTALLED)
    if dropin is not None:
        (unit_dir / "shop.service.d").mkdir()
        (unit_dir / "shop.service.d/10-extra.conf").write_text(dropin)
    return root


def desired(tmp_path: Path, text: str) -> str:
    path = tmp_path / "desired.service"
    path.write_text(text)
    return str(path)


def test_same_unit_is_no_change(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    result = diff.diff_installed(name="shop", root=str(root), unit_file=desired(tmp_path, INSTALLED))
    assert not result.differs and result.lines == () and result.summary == "no changes"


def test_changed_user_shows_lines_drop_ins_and_summary(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    new = INSTALLED.replace("User=shop", "User=web")
    result = diff.diff_installed(name="shop.service", root=str(root), unit_file=desired(tmp_path, new))
    text = "".join(result.lines)
    assert result.differs
    assert text.startswith(
        "--- /etc/systemd/system/shop.service (installed)\n+++ /etc/systemd/system/shop.service (desired)\n"
    )
    assert "-User=shop\n+User=web\n" in text
    assert "hunter2" not in text and "DB_PASSWORD=****" in text
    assert result.summary == "User shop → web"


def test_drop_in_that_overrides_is_taken_into_account(tmp_path: Path) -> None:
    # The drop-in sets User=, so changing User= in the main file changes nothing systemd would run with.
    root = make_root(tmp_path, dropin="[Service]\nUser=pinned\n")
    new = INSTALLED.replace("User=shop", "User=web")
    result = diff.diff_installed(name="shop", root=str(root), unit_file=desired(tmp_path, new))
    assert result.differs
    assert result.summary.startswith("no effective change")
    assert "-User=shop\n+User=web\n" in "".join(result.lines)


def test_other_changes_are_named_by_key(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    new = INSTALLED + "Nice=5\nRestart=on-failure\n"
    result = diff.diff_installed(name="shop", root=str(root), unit_file=desired(tmp_path, new))
    assert result.summary == "Nice, Restart changed"


def test_cat_text_is_systemctl_cat_format() -> None:
    text = diff.cat_text([("/etc/a.service", "[Unit]\n"), ("/etc/a.service.d/x.conf", "[Service]\nUser=x")])
    assert text == "# /etc/a.service\n[Unit]\n\n# /etc/a.service.d/x.conf\n[Service]\nUser=x\n"


def test_secret_only_change_exits_differ_without_showing_it(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    new = INSTALLED.replace("hunter2", "correct-horse")
    result = diff.diff_installed(name="shop", root=str(root), unit_file=desired(tmp_path, new))
    assert result.differs and result.lines == ()
    assert result.summary == "Environment DB_PASSWORD changed"


def test_rendered_desired_state(tmp_path: Path) -> None:
    root = make_root(tmp_path, dropin=None)
    rendered = '[Service]\nType=notify\nUser=shop\nEnvironment="MODE=prod"\nExecStart=/x/gunicorn -w 9 shop:app\n'
    result = diff.diff_installed(name="shop", root=str(root), rendered=rendered)
    assert result.differs
    assert "Environment DB_PASSWORD removed" in result.summary


def test_missing_installed_unit_is_refused(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    with pytest.raises(InputError, match="nope.service") as err:
        diff.diff_installed(name="nope", root=str(root), unit_file=desired(tmp_path, INSTALLED))
    assert err.value.exit_code == ExitCode.REFUSED


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"name": "bad name"}, UsageError, "not a valid systemd unit name"),
        ({"name": "shop", "unit_file": None}, UsageError, "exactly one of"),
        ({"name": "shop", "root": "/nonexistent-root"}, InputError, "no such directory"),
        ({"name": "shop", "unit_file": "/nonexistent.service"}, InputError, "no such file"),
    ],
)
def test_bad_input(tmp_path: Path, kw: dict[str, Any], error: type[Exception], message: str) -> None:
    args: dict[str, Any] = {"root": str(make_root(tmp_path)), "unit_file": desired(tmp_path, INSTALLED)}
    args.update(kw)
    with pytest.raises(error, match=message):
        diff.diff_installed(**args)


def test_summary_skips_an_environment_line_systemd_ignores() -> None:
    from unitctl.unitfile import UnitFile

    old = UnitFile.parse("[Service]\nEnvironment=A=1\n")
    new = UnitFile.parse("[Service]\nEnvironment=A=1\nEnvironment=B=\\q\n")
    assert "B" not in diff.summarize_units(old, new)


def test_summary_names_gunicorn_changes(tmp_path: Path) -> None:
    root = make_root(tmp_path, dropin=None)
    new = INSTALLED.replace("-w 9 shop:app", "--workers 5 --bind unix:/run/shop/s.sock shop:app")
    new = new.replace("ExecStart=/srv/venv/bin/gunicorn", "ExecStart=/srv/venv/bin/gunicorn --preload")
    result = diff.diff_installed(name="shop", root=str(root), unit_file=desired(tmp_path, new))
    assert result.summary == "workers 9 → 5, preload added, bind 127.0.0.1:8000 → unix:/run/shop/s.sock"


def test_summary_reads_workers_as_systemd_sees_them_through_a_drop_in(tmp_path: Path) -> None:
    # The drop-in replaces ExecStart (reset + new): the effective workers are the drop-in's 3, not the main file's 9.
    dropin = "[Service]\nExecStart=\nExecStart=/srv/venv/bin/gunicorn --preload -w 3 shop:app\n"
    root = make_root(tmp_path, dropin=dropin)
    new = INSTALLED.replace("-w 9", "-w 4")
    result = diff.diff_installed(name="shop", root=str(root), unit_file=desired(tmp_path, new))
    assert result.differs
    assert result.summary.startswith("no effective change")
    rewritten = dropin.replace("--preload -w 3", "-w 2")
    (root / "etc/systemd/system/shop.service.d/10-extra.conf").write_text(rewritten)
    result = diff.diff_installed(name="shop", root=str(root), unit_file=desired(tmp_path, INSTALLED))
    assert not result.differs  # the installed drop-in is the same on both sides


def test_summary_when_the_desired_unit_stops_running_gunicorn(tmp_path: Path) -> None:
    root = make_root(tmp_path, dropin=None)
    new = INSTALLED.replace("/srv/venv/bin/gunicorn -w 9 shop:app", "/usr/bin/uwsgi --ini shop.ini")
    result = diff.diff_installed(name="shop", root=str(root), unit_file=desired(tmp_path, new))
    assert result.summary == "Gunicorn removed"


def test_rewrite_of_the_installed_unit(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    text = INSTALLED.replace("gunicorn -w 9", "gunicorn --preload -w 9")
    (root / "etc/systemd/system/shop.service").write_text(text)
    spec = RewriteSpec(workers=5, no_preload=True)
    result = diff.diff_installed(name="shop", root=str(root), rewrite=spec)
    assert result.differs
    assert "-ExecStart=/srv/venv/bin/gunicorn --preload -w 9 shop:app\n" in "".join(result.lines)
    assert "+ExecStart=/srv/venv/bin/gunicorn -w 5 shop:app\n" in "".join(result.lines)
    assert result.summary == "workers 9 → 5, preload removed"
    same = diff.diff_installed(name="shop", root=str(root), rewrite=RewriteSpec(workers=9))
    assert not same.differs and same.summary == "no changes"


def test_rewrite_of_a_unit_without_gunicorn_is_refused(tmp_path: Path) -> None:
    root = make_root(tmp_path, dropin=None)
    (root / "etc/systemd/system/shop.service").write_text("[Service]\nExecStart=/bin/sleep 9\n")
    with pytest.raises(NotGunicornError):
        diff.diff_installed(name="shop", root=str(root), rewrite=RewriteSpec(workers=5))


def test_rewrite_targets_the_drop_in_that_systemd_runs(tmp_path: Path) -> None:
    dropin = "[Service]\nExecStart=\nExecStart=/srv/venv/bin/gunicorn --preload -w 3 shop:app\n"
    root = make_root(tmp_path, dropin=dropin)
    result = diff.diff_installed(name="shop", root=str(root), rewrite=RewriteSpec(workers=5, no_preload=True))
    text = "".join(result.lines)
    assert "+ExecStart=/srv/venv/bin/gunicorn -w 5 shop:app\n" in text
    assert "-ExecStart=/srv/venv/bin/gunicorn -w 9 shop:app\n" not in text  # the main file is left alone
    assert result.summary == "workers 3 → 5, preload removed"
    assert not diff.diff_installed(name="shop", root=str(root), rewrite=RewriteSpec(workers=3)).differs
