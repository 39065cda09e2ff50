"""CLI contract of render, rewrite, diff and verify: exit codes and one-line errors (typer's CliRunner)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unitctl.cli import app

runner = CliRunner()
GUNICORN = Path(sys.prefix) / "bin" / "gunicorn"
HERE = Path(__file__).resolve().parent  # a WorkingDirectory= that exists on every test host
needs_analyze = pytest.mark.systemd_analyze  # skipped without the tool, failed in CI (tests/conftest.py)


def one_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("unitctl: error: ")]
    assert len(errors) == 1, output
    return errors[0]


# --- render ---------------------------------------------------------------------------------------


def test_render_prints_the_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app,
        ["render", "--name", "shop", "--app", "shop.wsgi:application", "--workers", "4", "--user", "shop",
         "--working-dir", "/srv/shop", "--venv", "/srv/shop/venv", "--bind", "unix:/run/shop/shop.sock"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# shop.service: rendered by unitctl")
    service, sep, socket = result.stdout.partition("\n# ==> shop.socket <==\n")
    assert sep, "socket activation is the default: the .socket follows the service"
    assert "\nExecStart=/srv/shop/venv/bin/gunicorn --workers 4 shop.wsgi:application\n" in service
    assert "\nListenStream=/run/shop/shop.sock\n" in socket
    assert result.stderr == ""


def test_render_no_socket_prints_the_service_alone_with_its_bind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["render", "--name", "shop", "--app", "shop:app", "--workers", "2", "--user", "shop", "--working-dir",
            "/srv/shop", "--bind", "127.0.0.1:8001", "--no-socket"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "==>" not in result.stdout and ".socket" not in result.stdout
    assert "\nExecStart=gunicorn --workers 2 --bind 127.0.0.1:8001 shop:app\n" in result.stdout
    (tmp_path / "unitctl.toml").write_text("[render]\nsocket = false\n")
    from_file = runner.invoke(app, args[:-1])
    assert from_file.exit_code == 0, from_file.output
    assert from_file.stdout == result.stdout


def test_render_workers_auto_uses_this_hosts_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    result = runner.invoke(app, ["render", "--name", "a", "--app", "a:app", "--user", "a", "--working-dir", "/srv"])
    assert result.exit_code == 0, result.output
    assert "--workers 7 " in result.stdout
    result = runner.invoke(
        app, ["render", "--name", "a", "--app", "a:app", "--user", "a", "--working-dir", "/srv", "--max-workers", "5"]
    )
    assert "--workers 5 " in result.stdout


def test_render_warns_on_stderr_not_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["render", "--name", "a", "--app", "a:app", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "unitctl: warning: no --user" in result.stderr
    assert "warning" not in result.stdout


def test_render_output_file_and_socket_beside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "shop.service"
    target.write_text("old\n")
    target.chmod(0o640)
    result = runner.invoke(
        app,
        ["render", "--name", "shop", "--app", "shop:app", "--workers", "2", "--user", "shop", "--working-dir",
         "/srv/shop", "--socket", "--bind", "127.0.0.1:8000", "-o", str(target)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"wrote {target}" in result.stderr and f"wrote {tmp_path / 'shop.socket'}" in result.stderr
    assert "Requires=shop.socket" in target.read_text()
    assert target.stat().st_mode & 0o777 == 0o640  # an existing file keeps its mode
    assert "ListenStream=127.0.0.1:8000" in (tmp_path / "shop.socket").read_text()
    assert not [p for p in tmp_path.iterdir() if "unitctl-tmp" in p.name]


def test_render_socket_to_stdout_labels_the_second_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["render", "--name", "w", "--app", "w:app", "--workers", "1", "--socket"])
    assert result.exit_code == 0, result.output
    service, sep, socket = result.stdout.partition("\n# ==> w.socket <==\n")
    assert sep and "[Service]" in service and socket.startswith("# w.socket: rendered by unitctl")


def test_render_reads_unitctl_toml_and_flags_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "unitctl.toml").write_text(
        'name = "shop"\n[render]\napp = "shop.wsgi:application"\nworkers = 3\nuser = "shop"\n'
        'working_dir = "/srv/shop"\nenv = {A = "from-file", B = "kept"}\n'
    )
    result = runner.invoke(app, ["render", "--workers", "6", "--env", "A=from-flag"])
    assert result.exit_code == 0, result.output
    assert "shop.wsgi:application" in result.stdout and "--workers 6 " in result.stdout
    assert 'Environment="A=from-flag"' in result.stdout and 'Environment="B=kept"' in result.stdout
    assert "from-file" not in result.stdout


def test_render_unknown_toml_key_is_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "unitctl.toml").write_text('[render]\napp = "a:b"\nworker = 3\n')
    result = runner.invoke(app, ["render", "--name", "a"])
    assert result.exit_code == 2, result.output
    assert "unknown key 'worker' in [render]" in one_error_line(result.output)
    assert result.stdout == ""


def test_render_user_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.j2").write_text("[Service]\nExecStart={{ exec_start }}\n")
    result = runner.invoke(
        app, ["render", "--name", "a", "--app", "a:app", "--workers", "2", "--template", "t.j2", "--no-socket"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "[Service]\nExecStart=gunicorn --workers 2 --bind 127.0.0.1:8000 a:app\n"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--app", "a:app"], 2, "--name is required"),
        (["--name", "a"], 2, "--app is required"),
        (["--name", "a", "--app", "a"], 2, "is not MODULE:VARIABLE"),
        (["--name", "a", "--app", "a:b", "--workers", "lots"], 2, "--workers must be a positive integer"),
        (["--name", "a", "--app", "a:b", "--bind", "nowhere"], 2, "needs a port"),
        (["--name", "a", "--app", "a:b", "--venv", "venv"], 2, "absolute path"),
        (["--name", "a", "--app", "a:b", "--env", "NOVALUE"], 2, "is not KEY=VALUE"),
        (["--name", "a", "--app", "a:b", "--template", "/nonexistent.j2"], 3, "no such file; check the --template"),
        (["--name", "a", "--app", "a:b", "-o", "/nonexistent/dir/a.service"], 3, "no such directory"),
    ],
)
def test_render_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], code: int, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["render", *args])
    assert result.exit_code == code, result.output
    assert message in one_error_line(result.output)
    assert list(tmp_path.iterdir()) == []


def test_render_unknown_flag_is_exit_2() -> None:
    result = runner.invoke(app, ["render", "--preload"])
    assert result.exit_code == 2, result.output
    assert "No such option" in result.output


def test_render_max_workers_must_be_a_number() -> None:
    result = runner.invoke(app, ["render", "--max-workers", "x"])
    assert result.exit_code == 2, result.output


# --- verify ---------------------------------------------------------------------------------------


def write_unit(tmp_path: Path, body: str, name: str = "app.service") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


@needs_analyze
def test_verify_clean_unit(tmp_path: Path) -> None:
    path = write_unit(
        tmp_path,
        f"[Service]\nType=notify\nWorkingDirectory={HERE}\nExecStart={GUNICORN} app:app\n"
        "ExecReload=/bin/kill -s HUP $MAINPID\nKillMode=mixed\n",
    )
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: ok\n"


@needs_analyze
def test_verify_warnings_exit_0(tmp_path: Path) -> None:
    path = write_unit(tmp_path, f"[Service]\nWorkingDirectory={HERE}\nExecStart={GUNICORN} app:app\nBogus=1\n")
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stdout and "Bogus" in result.stdout
    assert result.stdout.rstrip().endswith("warnings)") or result.stdout.rstrip().endswith("warning)")


@needs_analyze
def test_verify_errors_exit_3(tmp_path: Path) -> None:
    path = write_unit(tmp_path, "[Service]\nExecStart=/nonexistent/gunicorn app:app\n")
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 3, result.output
    assert "error: app.service: Command /nonexistent/gunicorn is not executable" in result.stdout
    assert "1 error found" in one_error_line(result.output)


def test_verify_missing_file_exit_3() -> None:
    result = runner.invoke(app, ["verify", "/nonexistent/app.service"])
    assert result.exit_code == 3, result.output
    assert one_error_line(result.output) == "unitctl: error: /nonexistent/app.service: no such file; check the path"


def test_verify_file_name_without_unit_suffix_asks_for_name(tmp_path: Path) -> None:
    path = write_unit(tmp_path, "[Service]\nExecStart=/bin/true\n", name="candidate.txt")
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 2, result.output
    assert "pass --name" in one_error_line(result.output)


def test_verify_needs_a_file() -> None:
    result = runner.invoke(app, ["verify"])
    assert result.exit_code == 2, result.output


# --- diff -----------------------------------------------------------------------------------------

INSTALLED = "[Service]\nType=notify\nUser=shop\nEnvironment=API_TOKEN=s3cr3t\nExecStart=/v/bin/gunicorn -w 9 shop:app\n"


def installed_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/shop.service").write_text(INSTALLED)
    return root


def test_diff_differs_exit_1_with_masked_secrets(tmp_path: Path) -> None:
    root = installed_root(tmp_path)
    new = tmp_path / "new.service"
    new.write_text(INSTALLED.replace("User=shop", "User=web").replace("s3cr3t", "rotated"))
    result = runner.invoke(app, ["diff", "shop", "--root", str(root), "--unit-file", str(new)])
    assert result.exit_code == 1, result.output
    assert "-User=shop\n+User=web\n" in result.stdout
    assert "s3cr3t" not in result.output and "rotated" not in result.output
    assert " Environment=API_TOKEN=****\n" in result.stdout
    assert result.stdout.endswith("User shop → web, Environment API_TOKEN changed\n")
    assert "\x1b[" not in result.stdout  # not a terminal: no colour


def test_diff_same_exit_0(tmp_path: Path) -> None:
    root = installed_root(tmp_path)
    result = runner.invoke(
        app, ["diff", "shop.service", "--root", str(root), "--unit-file", str(root / "etc/systemd/system/shop.service")]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "no changes\n"


def test_diff_against_render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = installed_root(tmp_path)
    result = runner.invoke(
        app,
        ["diff", "shop", "--root", str(root), "--render", "--app", "shop:app", "--workers", "5", "--user", "shop",
         "--working-dir", "/srv/shop"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "+ExecStart=gunicorn --workers 5 shop:app\n" in result.stdout
    assert "Environment API_TOKEN removed" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["nope", "--unit-file", "{empty}"], 3, "nope.service"),
        (["bad name!", "--unit-file", "{empty}"], 2, "not a valid systemd unit name"),
        (["shop"], 2, "exactly one of"),
        (["shop", "--app", "a:b"], 2, "add --render"),
        (["shop", "--unit-file", "/nonexistent.service"], 3, "no such file"),
        (["shop", "--render", "--app", "bad"], 2, "not MODULE:VARIABLE"),
        (["shop", "--workers", "zero"], 2, "--workers must be a positive integer"),
    ],
)
def test_diff_bad_input(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    root = installed_root(tmp_path)
    (tmp_path / "empty.service").write_text("")
    args = [a.format(empty=tmp_path / "empty.service") for a in args]
    result = runner.invoke(app, ["diff", *args, "--root", str(root)])
    assert result.exit_code == code, result.output
    assert message in one_error_line(result.output)
    assert result.stdout == ""


def test_diff_against_a_rewrite_of_the_installed_unit(tmp_path: Path) -> None:
    root = installed_root(tmp_path)
    result = runner.invoke(app, ["diff", "shop", "--root", str(root), "--workers", "5"])
    assert result.exit_code == 1, result.output
    assert "-ExecStart=/v/bin/gunicorn -w 9 shop:app\n+ExecStart=/v/bin/gunicorn -w 5 shop:app\n" in result.stdout
    assert result.stdout.endswith("workers 9 → 5\n")
    same = runner.invoke(app, ["diff", "shop", "--root", str(root), "--workers", "9", "--no-preload"])
    assert same.exit_code == 0, same.output
    assert same.stdout == "no changes\n"


def test_diff_unknown_flag_exit_2() -> None:
    result = runner.invoke(app, ["diff", "shop", "--frobnicate"])
    assert result.exit_code == 2, result.output


# --- rewrite --------------------------------------------------------------------------------------

# CRLF, a comment inside a continuation, odd spacing: the no-op must keep every byte.
ODD_UNIT = (
    b"[Unit]\r\nDescription=odd  \r\n\r\n[Service]\r\n; comment\r\nExecStart=/v/bin/gunicorn --preload \\\r\n"
    b"# inside the continuation\r\n    -w 9 --bind=127.0.0.1:8000 app:app\r\nEnvironment=A=1\r\n"
)
PLAIN_UNIT = "[Service]\n# why 9: see ticket\nExecStart=/v/bin/gunicorn --preload -w 9 app:app\nUser=web\n"


def unit_file(tmp_path: Path, data: bytes | str, name: str = "web.service") -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def test_rewrite_without_operation_prints_the_unit_byte_for_byte(tmp_path: Path) -> None:
    path = unit_file(tmp_path, ODD_UNIT)
    result = runner.invoke(app, ["rewrite", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == ODD_UNIT


def test_rewrite_changes_only_the_gunicorn_options(tmp_path: Path) -> None:
    path = unit_file(tmp_path, PLAIN_UNIT)
    result = runner.invoke(app, ["rewrite", str(path), "--workers", "5", "--no-preload"])
    assert result.exit_code == 0, result.output
    assert result.stdout == PLAIN_UNIT.replace("--preload -w 9", "-w 5")
    assert path.read_text() == PLAIN_UNIT  # stdout only


def test_rewrite_workers_auto_uses_this_hosts_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    path = unit_file(tmp_path, PLAIN_UNIT)
    result = runner.invoke(app, ["rewrite", str(path), "--workers", "auto", "--max-workers", "6"])
    assert result.exit_code == 0, result.output
    assert "-w 6 app:app" in result.stdout


@pytest.mark.parametrize(("workers", "code"), [("4", 0), ("5", 2)])
def test_rewrite_workers_may_equal_max_workers_but_not_exceed_it(tmp_path: Path, workers: str, code: int) -> None:
    path = unit_file(tmp_path, PLAIN_UNIT)
    result = runner.invoke(app, ["rewrite", str(path), "--workers", workers, "--max-workers", "4"])
    assert result.exit_code == code, result.output
    if code == 0:
        assert "-w 4 app:app" in result.stdout
    else:
        assert "--workers 5 is above --max-workers 4" in one_error_line(result.output)


def test_rewrite_no_preload_warns_when_the_config_file_computes_preload(tmp_path: Path) -> None:
    # Gunicorn evaluates gunicorn.conf.py: a computed preload_app may be on, and the unit cannot turn it off.
    (tmp_path / "gunicorn.conf.py").write_text('import os\npreload_app = os.environ.get("PRELOAD") == "1"\n')
    unit = f"[Service]\nWorkingDirectory={tmp_path}\nExecStart=/v/bin/gunicorn -w 2 app:app\n"
    result = runner.invoke(app, ["rewrite", str(unit_file(tmp_path, unit)), "--no-preload"])
    assert result.exit_code == 0, result.output
    assert result.stdout == unit
    assert f"unitctl: warning: {tmp_path}/gunicorn.conf.py sets preload_app;" in result.stderr
    (tmp_path / "gunicorn.conf.py").write_text("preload_app = False\n")
    literal_off = runner.invoke(app, ["rewrite", str(unit_file(tmp_path, unit)), "--no-preload"])
    assert literal_off.exit_code == 0 and "warning" not in literal_off.stderr, literal_off.output


def test_rewrite_check(tmp_path: Path) -> None:
    path = unit_file(tmp_path, PLAIN_UNIT)
    pending = runner.invoke(app, ["rewrite", str(path), "--workers", "5", "--check"])
    assert pending.exit_code == 1, pending.output
    assert pending.stdout == "workers 9 → 5\n"
    done = runner.invoke(app, ["rewrite", str(path), "--workers", "9", "--check"])
    assert done.exit_code == 0, done.output
    assert done.stdout == "no changes\n"
    assert path.read_text() == PLAIN_UNIT


def test_rewrite_in_place_shows_the_diff_then_writes_keeping_mode(tmp_path: Path) -> None:
    path = unit_file(tmp_path, PLAIN_UNIT)
    path.chmod(0o640)
    result = runner.invoke(app, ["rewrite", str(path), "--no-preload", "--in-place"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "-ExecStart=/v/bin/gunicorn --preload -w 9 app:app\n+ExecStart=/v/bin/gunicorn -w 9 app:app\n" in (
        result.stderr
    )
    assert result.stderr.index("+ExecStart") < result.stderr.index("wrote ")
    assert path.read_text() == PLAIN_UNIT.replace("--preload ", "")
    assert path.stat().st_mode & 0o777 == 0o640
    again = runner.invoke(app, ["rewrite", str(path), "--no-preload", "--in-place"])
    assert again.exit_code == 0 and "no changes" in again.stderr


def test_rewrite_drop_in(tmp_path: Path) -> None:
    path = unit_file(tmp_path, PLAIN_UNIT)
    etc = tmp_path / "etc"
    etc.mkdir()
    result = runner.invoke(app, ["rewrite", str(path), "--workers", "3", "--drop-in", str(etc)])
    assert result.exit_code == 0, result.output
    conf = etc / "web.service.d" / "50-unitctl.conf"
    assert conf.read_text() == "[Service]\nExecStart=\nExecStart=/v/bin/gunicorn --preload -w 3 app:app\n"
    assert path.read_text() == PLAIN_UNIT


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["/nonexistent/web.service", "--workers", "3"], 3, "no such file"),
        (["/nonexistent/web.service"], 3, "no such file"),
        (["{unit}", "--workers", "0"], 2, "--workers must be a positive integer"),
        (["{unit}", "--max-workers", "4"], 2, "add --workers auto"),
        (["{unit}", "--workers", "3", "--in-place", "--check"], 2, "exclude each other"),
        (["{unit}", "--in-place"], 2, "nothing to write"),
        (["{unit}", "--workers", "3", "--drop-in", "/nonexistent"], 3, "no such directory"),
        (["{other}", "--workers", "3"], 3, "does not run Gunicorn"),
        (["{broken}"], 3, "{broken}"),
    ],
)
def test_rewrite_bad_input(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    names = {
        "unit": str(unit_file(tmp_path, PLAIN_UNIT)),
        "other": str(unit_file(tmp_path, "[Service]\nExecStart=/bin/sleep 9\n", name="other.service")),
        "broken": str(unit_file(tmp_path, "[Service\nExecStart=/bin/true\n", name="broken.service")),
    }
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = runner.invoke(app, ["rewrite", *(a.format(**names) for a in args)])
    assert result.exit_code == code, result.output
    assert message.format(**names) in one_error_line(result.output)
    assert result.stdout == ""
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_rewrite_unknown_flag_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["rewrite", str(unit_file(tmp_path, PLAIN_UNIT)), "--threads", "4"])
    assert result.exit_code == 2, result.output


SHIPPED = [p for p in sorted(Path("/usr/lib/systemd/system").glob("*.service")) if p.is_file() and not p.is_symlink()]


# Without shipped units the loop below would pass having checked nothing: skip on a bare host, fail in CI.
@pytest.mark.skipif(
    not SHIPPED and os.environ.get("CI", "").lower() not in ("1", "true", "yes"),
    reason="no systemd units shipped on this machine",
)
def test_rewrite_noop_is_byte_identical_on_every_shipped_unit() -> None:
    assert SHIPPED, "no unit files in /usr/lib/systemd/system: install systemd"
    for path in SHIPPED:
        result = runner.invoke(app, ["rewrite", str(path)])
        assert result.exit_code == 0, (path, result.output)
        assert result.stdout_bytes == path.read_bytes(), path


@needs_analyze
def test_verify_with_name_loads_an_oddly_named_file(tmp_path: Path) -> None:
    path = write_unit(
        tmp_path,
        f"[Service]\nType=notify\nWorkingDirectory={HERE}\nExecStart={GUNICORN} app:app\n"
        "ExecReload=/bin/kill -s HUP $MAINPID\nKillMode=mixed\n",
        name="candidate.txt",
    )
    result = runner.invoke(app, ["verify", str(path), "--name", "shop.service"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: ok\n"


def test_rewrite_in_place_follows_a_symlinked_unit(tmp_path: Path) -> None:
    real = unit_file(tmp_path, PLAIN_UNIT, name="real.service")
    link = tmp_path / "web.service"
    link.symlink_to(real)
    result = runner.invoke(app, ["rewrite", str(link), "--workers", "4", "--in-place"])
    assert result.exit_code == 0, result.output
    assert link.is_symlink()
    assert real.read_text() == PLAIN_UNIT.replace("-w 9", "-w 4")
