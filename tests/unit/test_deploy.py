"""unitctl deploy: the settings file, option parsing, the rewritten copy, fetch, and the guarded apply it hands over.

The engine runs for real against FakeSystemd and a real git repository (test_apply_fake's World); the real
systemd, Gunicorn and git run in tests/integration/test_deploy_real.py and test_update_script_real.py.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_apply_fake as base
from gitcmd import commit, git
from test_apply_fake import URL, World, installed, unit_text
from test_json_schema import problems

from unitctl import config, history
from unitctl.commands import deploy as deploy_mod
from unitctl.commands.deploy import DeployResult, DeploySettings, resolve_settings, run
from unitctl.errors import ExitCode, GitStateError, RefusedError, UnitctlError, UsageError
from unitctl.systemd.fake import absent_state

world = base.world
lock_dir = base.lock_dir
PRELOADED = unit_text(bind="127.0.0.1:8000 --preload")  # ExecStart=... -w 2 -b 127.0.0.1:8000 --preload app:app


@pytest.fixture(autouse=True)
def no_server_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The machine's /etc/unitctl/unitctl.toml is never read by a test; a test may write this one instead."""
    path = tmp_path / "etc-unitctl" / "unitctl.toml"
    monkeypatch.setattr(config, "SERVER_CONFIG", path)
    for key in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(key, raising=False)
    return path


def settings(world: World, **kw: Any) -> DeploySettings:
    base: dict[str, Any] = {
        "unit": "app.service",
        "repo": world.repo,
        "ready_url": URL,
        "ready_timeout": 10.0,
        "history_dir": world.hist,
        "unit_dir": world.units,
        "canary": False,  # the canary has its own tests; these script the live service's answers
    }
    base.update(kw)
    return DeploySettings(**base)


def deploy(world: World, **kw: Any) -> DeployResult:
    return run(settings=settings(world, **kw), edges=world.edges(), out=io.StringIO())


def exec_start(data: bytes) -> str:
    (line,) = [x for x in data.decode().splitlines() if x.startswith("ExecStart=")]
    return line


# -- the deploy: a rewritten copy of the installed unit, handed to the guarded apply ------------------------------


def test_the_installed_unit_is_rewritten_without_preload_and_deployed(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    installed(world, PRELOADED)
    result = deploy(world, workers=3)
    err = capsys.readouterr().err
    assert "unitctl deploy: rewrote a copy of app.service" in err and "--no-preload --strict --workers 3" in err
    assert f"-{exec_start(PRELOADED)}" in err, "the CI log shows what changes in the unit"
    assert "DB_PASSWORD=****" in err and "hunter22" not in err, "secrets masked in that diff"
    assert result.exit_code == 0 and result.rewritten and result.source == world.unit_path
    deployed = world.unit_path.read_bytes()
    assert exec_start(deployed).endswith("/gunicorn -w 3 -b 127.0.0.1:8000 app:app")
    assert deployed.replace(exec_start(deployed).encode(), b"") == PRELOADED.replace(
        exec_start(PRELOADED).encode(), b""
    ), "only the Gunicorn command line changes"
    rec = world.records()[-1]
    assert (rec.command, rec.outcome, rec.to_rev) == ("deploy", "ok", world.revs["v2"])
    assert history.stored_unit(world.hist, rec.unit_sha256 or "") == deployed


def test_keep_preload_without_workers_deploys_the_unit_as_it_is(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    installed(world, PRELOADED)
    result = deploy(world, keep_preload=True)
    assert result.exit_code == 0 and not result.rewritten
    assert world.unit_path.read_bytes() == PRELOADED
    assert "rewriting" not in capsys.readouterr().err


def test_a_service_that_is_not_installed_is_refused_before_anything(world: World) -> None:
    world.fake.add_unit("app.service", absent_state("app.service"))
    with pytest.raises(RefusedError) as err:
        deploy(world)
    assert err.value.exit_code == ExitCode.REFUSED
    assert str(err.value) == (
        "app.service is not installed (LoadState=not-found); install it first or pass --unit-file FILE"
    )
    assert set(world.fake.ops()) <= {"state"} and world.records() == [] and not world.unit_path.exists()


def test_a_first_deploy_from_a_unit_file_takes_the_socket_beside_it(world: World) -> None:
    world.fake.add_unit("app.service", absent_state("app.service"))
    world.fake.add_unit("app.socket", absent_state("app.socket"))
    new = world.tmp / "new"
    new.mkdir()
    (new / "app.service").write_bytes(PRELOADED)
    socket = b"[Socket]\nListenStream=127.0.0.1:8000\n\n[Install]\nWantedBy=sockets.target\n"
    (new / "app.socket").write_bytes(socket)
    result = deploy(world, unit_file=new / "app.service")
    assert result.exit_code == 0 and result.source == new / "app.service"
    assert "--preload" not in exec_start(world.unit_path.read_bytes())
    assert (world.units / "app.socket").read_bytes() == socket
    assert (new / "app.service").read_bytes() == PRELOADED, "the given file is never edited"


def test_preload_kept_by_a_config_file_is_refused_strictly(world: World) -> None:
    conf = world.tmp / "gunicorn.conf.py"
    conf.write_text("preload_app = True\n")
    data = unit_text(bind=f"127.0.0.1:8000 -c {conf}")
    installed(world, data)
    before = len(world.records())
    with pytest.raises(RefusedError) as err:
        deploy(world)
    assert "--no-preload was asked, but preload stays on" in str(err.value) and str(conf) in str(err.value)
    assert world.unit_path.read_bytes() == data and len(world.records()) == before
    # --keep-preload is the way to deploy it as it is.
    assert deploy(world, keep_preload=True).exit_code == 0


def test_a_failed_fetch_refuses_before_apply(world: World) -> None:
    installed(world, PRELOADED)
    before = len(world.records())
    with pytest.raises(GitStateError) as err:
        deploy(world, fetch=True, remote="nosuchremote")
    assert err.value.exit_code == ExitCode.REFUSED
    assert f"fetching nosuchremote into {world.repo} failed" in str(err.value)
    assert "nothing was changed" in str(err.value)
    assert len(world.records()) == before and world.unit_path.read_bytes() == PRELOADED


def test_fetch_brings_the_revision_then_deploys_it(world: World) -> None:
    installed(world, PRELOADED)
    origin = world.tmp / "origin"
    git(world.tmp, "clone", "-q", str(world.repo), str(origin))
    v3 = commit(origin, {"app.py": "V = 3\n"}, "v3")
    git(world.repo, "remote", "add", "upstream", str(origin))
    assert git(world.repo, "cat-file", "-t", v3, check=False).strip() != "commit"
    result = deploy(world, fetch=True, remote="upstream", rev=v3)
    assert result.exit_code == 0
    assert world.head() == v3 and world.records()[-1].to_rev == v3


# -- the settings: [deploy] and [deploy.SERVICE] of the server's file, flags over them ----------------------------


def toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_service_table_over_deploy_table_and_flags_over_both(tmp_path: Path) -> None:
    (tmp_path / "srv" / "app").mkdir(parents=True)
    cfg = toml(
        tmp_path / "unitctl.toml",
        '[deploy]\nready_timeout = 30\nworkers = "auto"\nremote = "up"\n'
        '[deploy.app]\nrepo = "srv/app"\nfetch = true\nready_url = "http://127.0.0.1:8000/r"\nworkers = 4\n'
        '[deploy."other.service"]\nready_timeout = 5\n',
    )
    s = resolve_settings(flags={"service": "app", "ready_timeout": 12.0}, config_file=str(cfg))
    assert s.unit == "app.service" and s.config_path == cfg
    assert s.repo == tmp_path / "srv" / "app", "relative to the file"
    assert (s.fetch, s.remote, s.workers, s.ready_timeout) == (True, "up", 4, 12.0)
    assert s.ready_url == "http://127.0.0.1:8000/r"
    other = resolve_settings(flags={"service": "other.service"}, config_file=str(cfg))
    assert (other.repo, other.ready_timeout, other.workers, other.fetch) == (None, 5, "auto", False)
    assert resolve_settings(flags={"service": "app", "fetch": False}, config_file=str(cfg)).fetch is False


def test_the_server_file_is_read_by_default_and_the_current_directory_never(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_server_config: Path
) -> None:
    work = tmp_path / "work"
    toml(work / "unitctl.toml", '[deploy]\nbuild_cmd = "planted"\n')
    monkeypatch.chdir(work)
    s = resolve_settings(flags={"service": "app"}, config_file=None)
    assert s.build_cmd == () and s.config_path is None
    toml(no_server_config, '[deploy.app]\nbuild_cmd = "make"\nstrategy = "restart"\ncanary = false\n')
    s = resolve_settings(flags={"service": "app"}, config_file=None)
    assert (s.build_cmd, s.strategy, s.canary, s.config_path) == (("make",), "restart", False, no_server_config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[deploy]\nbogus = 1\n", "unknown key 'bogus' in [deploy]"),
        ("[deploy.other]\nrepoo = '/x'\n", "unknown key 'repoo' in [deploy.other]"),
        ("[deploy.app]\nunit_file = 'x.service'\n", "unknown key 'unit_file' in [deploy.app]"),
        ("[deploy.app]\nrev = 'abc'\n", "unknown key 'rev' in [deploy.app]"),
        ('[deploy."x.socket"]\nfetch = true\n', "[deploy.x.socket] does not name a service"),
        ("[deploy.app]\nworkers = 0\n", 'workers in [deploy.app] must be a positive integer or "auto"'),
        ("[deploy]\nready_timeout = -1\n", "ready_timeout in [deploy] must be a finite number above 0"),
        ("[deploy.app]\nfetch = true\n", "--fetch needs --repo DIR"),
        ("[deploy.app]\nstrategy = 'sideways'\n", "--strategy must be one of auto, restart, reload"),
        ("[deploy.app]\nbackend = 'carrier-pigeon'\n", "backend must be one of auto, dbus, systemctl"),
        ("[deploy.app]\nready_url = 'ftp://x'\n", "is not an http(s) URL"),
        ("[deploys]\n", "unknown table [deploys]"),
    ],
)
def test_bad_settings_are_usage_errors_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    cfg = toml(tmp_path / "unitctl.toml", text)
    with pytest.raises(UsageError) as err:
        resolve_settings(flags={"service": "app"}, config_file=str(cfg))
    assert message in str(err.value)


# -- the command line ---------------------------------------------------------------------------------------------


@pytest.fixture
def cli(world: World, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    from typer.testing import CliRunner

    from unitctl.cli import app

    monkeypatch.setattr(deploy_mod, "real_edges", lambda name: world.edges())
    monkeypatch.setattr(deploy_mod, "DEFAULT_UNIT_DIR", world.units)

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(app, ["deploy", *args])

    return invoke


def test_apply_options_pass_through_as_flags_with_equals_or_after_dashes(
    cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[DeploySettings] = []

    def fake_run(*, settings: DeploySettings, edges: Any, out: Any) -> DeployResult:
        seen.append(settings)
        return DeployResult(settings.unit, 0, Path("/x"), False)

    monkeypatch.setattr(deploy_mod, "run", fake_run)
    res = cli(
        "app", "--json", "--strategy=restart", "--no-canary", "--dry-run", f"--history-dir={tmp_path}",
        "--workers", "auto", "--", "--build-cmd", "make x", "--fail-after", "2", "--ready-interval=0.25",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (s,) = seen
    assert (s.as_json, s.strategy, s.canary, s.dry_run, s.history_dir) == (True, "restart", False, True, tmp_path)
    assert (s.workers, s.build_cmd, s.fail_after, s.ready_interval, s.keep_preload) == (
        "auto",
        ("make x",),
        2,
        0.25,
        False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no SERVICE given"),
        (["app", "extra"], "unexpected argument 'extra' (the service is 'app')"),
        (["app", "--", "--render"], "--render is not an apply option deploy passes on"),
        (["app", "--no-guarded"], "--guarded/--no-guarded is not an apply option deploy passes on"),
        (["app", "--", "--rev", "abc"], "--rev is not an apply option deploy passes on; give it to deploy itself"),
        (["app", "--no-preload"], "--no-preload is not an apply option deploy passes on"),
        (["app", "--bogus"], "No such option: --bogus"),
        (["app", "--strategy=sideways"], "'sideways' is not one of 'auto', 'restart', 'reload'"),
        (["app.socket"], "'app.socket' is not a service"),
        (["app", "--workers", "0"], "--workers must be a positive integer or 'auto', not '0'"),
        (["app", "--remote", "-x", "--repo", "."], "--remote '-x' is not a remote name"),
        (["app", "--rev", "--all", "--repo", "."], "--rev '--all' is not a revision"),
        (["app", "--config", "/no/such.toml"], "/no/such.toml: no such file"),
    ],
)
def test_bad_options_are_one_line_and_nothing_is_asked(
    world: World, cli: Callable[..., Any], args: list[str], message: str
) -> None:
    res = cli(*args)
    assert res.exit_code in (2, 3), res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("unitctl: error: "), res.stderr
    assert message in lines[0]
    assert res.stdout == ""
    assert world.fake.calls == [] and world.records() == []


def test_json_reports_a_refusal_before_apply_as_apply_does(world: World, cli: Callable[..., Any]) -> None:
    world.fake.add_unit("app.service", absent_state("app.service"))
    res = cli("app", "--json", f"--history-dir={world.hist}")
    assert res.exit_code == 3, res.output
    out = json.loads(res.stdout)
    assert (out["command"], out["unit"], out["exit_code"]) == ("deploy", "app.service", 3)
    assert "is not installed" in out["message"] and out["outcome"] == "refused"
    assert problems(out) == []  # the one envelope of docs/json.md


def test_json_prints_applys_result_object(world: World, cli: Callable[..., Any]) -> None:
    installed(world, PRELOADED)
    res = cli(
        "app", "--repo", str(world.repo), "--ready-url", URL, "--json", f"--history-dir={world.hist}", "--no-canary"
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["outcome"] == "deployed" and out["command"] == "deploy"
    assert out["result"]["record"]["to_rev"] == world.revs["v2"] and problems(out) == []


def test_summary_stdout_prints_the_summary_and_reports_everything_else_on_stderr(
    world: World, cli: Callable[..., Any]
) -> None:
    world.fake.add_unit("app.service", absent_state("app.service"))
    res = cli("app", "--summary-stdout", f"--history-dir={world.hist}")
    assert res.exit_code == 3
    assert res.stdout.startswith("### ❌ unitctl deploy app.service: refused, nothing changed (exit 3)\n"), res.stdout
    assert "::error title=unitctl deploy app.service%3A refused%2C nothing changed::app.service is not installed" in (
        res.stderr
    )
    assert "GITHUB_ACTIONS" not in os.environ and "GITHUB_STEP_SUMMARY" not in os.environ, "the environment is restored"
    # A good deploy: the summary of apply's result, on stdout only.
    installed(world, PRELOADED)
    res = cli("app", "--summary-stdout", "--repo", str(world.repo), "--ready-url", URL, f"--history-dir={world.hist}",
              "--no-canary")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert res.stdout.startswith("### ✅ unitctl deploy app.service: deployed (exit 0)"), res.stdout
    assert "deployed" in res.stderr, "the result line goes to stderr"


def test_in_github_actions_a_refused_rewrite_is_an_annotation_and_a_summary(
    world: World, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = world.tmp / "gunicorn.conf.py"
    conf.write_text("preload_app = True\n")
    installed(world, unit_text(bind=f"127.0.0.1:8000 -c {conf}"))
    summary = world.tmp / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    res = cli("app", "--repo", str(world.repo), "--ready-url", URL, f"--history-dir={world.hist}")
    assert res.exit_code == 3
    assert "::error title=unitctl deploy app.service%3A refused%2C nothing changed::" in res.stderr
    assert summary.read_text().startswith("### ❌ unitctl deploy app.service: refused, nothing changed (exit 3)")
    assert "preload stays on" in summary.read_text()


def test_errors_are_unitctl_errors_with_their_exit_codes() -> None:
    # The exit codes deploy promises are the error tree's: nothing of its own.
    assert issubclass(GitStateError, RefusedError) and issubclass(RefusedError, UnitctlError)
    assert int(RefusedError("x").exit_code) == 3 and int(UsageError("x").exit_code) == 2
