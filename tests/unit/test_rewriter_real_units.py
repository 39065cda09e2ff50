"""Rewriter fixes found by running it over real Gunicorn units from public repositories (see CHANGELOG).

gunicorn3 and `%` specifiers in the program path are golden cases (tests/golden/); here: the CLI paths around them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from unitctl import execline
from unitctl.cli import app
from unitctl.errors import UnitSyntaxError
from unitctl.placeholders import find_placeholder
from unitctl.verify import verify_unit

runner = CliRunner()


def test_rewrite_in_place_of_a_crlf_unit_diffs_only_the_changed_line(tmp_path: Path) -> None:
    unit = tmp_path / "app.service"
    crlf = b"[Service]\r\nUser=app\r\nExecStart=/srv/v/bin/gunicorn --preload -w 2 app:app\r\nType=notify\r\n"
    unit.write_bytes(crlf)
    result = runner.invoke(app, ["rewrite", str(unit), "--no-preload", "--in-place"])
    assert result.exit_code == 0, result.output
    # Raw bytes: click's result.stderr turns CRLF into LF, and splitlines() would split at the \r.
    lines = result.stderr_bytes.decode().split("\n")
    changed = [line for line in lines if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]
    assert changed == [
        "-ExecStart=/srv/v/bin/gunicorn --preload -w 2 app:app\r",
        "+ExecStart=/srv/v/bin/gunicorn -w 2 app:app\r",
    ]
    assert unit.read_bytes() == crlf.replace(b" --preload", b"")


@pytest.mark.parametrize(
    "program", ["%h/app/venv/bin/gunicorn", "%S/app/bin/gunicorn", "%E/x/gunicorn", "/srv/%n/bin/gunicorn", "gunicorn"]
)
def test_specifiers_in_the_program_path_are_resolved_before_the_path_check(program: str) -> None:
    (cmd,) = execline.split(f"{program} app:app")
    assert cmd.words[0].value == program  # kept as written: systemd resolves it at load


@pytest.mark.parametrize("program", ["%n/bin/gunicorn", "bin/%h/gunicorn"])
def test_a_specifier_that_leaves_a_relative_path_is_still_refused(program: str) -> None:
    with pytest.raises(UnitSyntaxError, match="neither an absolute path nor a plain file name"):
        execline.split(f"{program} app:app")


def test_diff_of_an_installed_template_names_the_placeholder(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/shop.service").write_text("[Service]\nExecStart={{ venv }}/bin/gunicorn app:app\n")
    result = runner.invoke(app, ["diff", "shop", "--root", str(root), "--no-preload"])
    assert result.exit_code == 3, result.output
    assert "line 2: '{{ venv }}' is a Jinja template placeholder, not a unit" in result.stderr


def test_rewrite_and_verify_agree_on_a_placeholder_in_a_comment(tmp_path: Path) -> None:
    text = "# replace @VENV@ with the venv\n[Service]\nExecStart=/usr/bin/true\n"
    assert find_placeholder(text) is None
    path = tmp_path / "x.service"
    path.write_text(text)
    report = verify_unit(path, name="x.service")
    assert not any("placeholder" in e for e in report.errors), report.errors
    path.write_text(text.replace("/usr/bin/true", "@VENV@/bin/gunicorn app:app"))
    report = verify_unit(path, name="x.service")
    assert any("placeholder '@VENV@' (line 3)" in e for e in report.errors), report.errors


def test_strict_refuses_when_a_config_file_keeps_preload_on(tmp_path: Path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text("preload_app = True\n")
    unit = tmp_path / "app.service"
    original = f"[Service]\nWorkingDirectory={tmp_path}\nExecStart=/srv/v/bin/gunicorn --preload app:app\n"
    unit.write_text(original)
    lax = runner.invoke(app, ["rewrite", str(unit), "--no-preload"])
    assert lax.exit_code == 0 and "sets preload_app" in lax.stderr
    strict = runner.invoke(app, ["rewrite", str(unit), "--no-preload", "--strict", "--in-place"])
    assert strict.exit_code == 3, strict.output
    assert strict.stderr.count("\n") == 1 and "preload stays on" in strict.stderr
    assert unit.read_text() == original, "nothing written"
    (tmp_path / "gunicorn.conf.py").write_text("workers = 3\n")
    ok = runner.invoke(app, ["rewrite", str(unit), "--no-preload", "--strict", "--in-place"])
    assert ok.exit_code == 0, ok.output
    assert "--preload" not in unit.read_text()
