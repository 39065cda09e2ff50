"""The canary's pure parts: its command, the entries its tree shares with the live checkout, its names and mounts."""

from __future__ import annotations

import pytest

from unitctl import gunicorn
from unitctl.deploy import canary
from unitctl.errors import RefusedError, SystemdError
from unitctl.probe import Probe
from unitctl.systemd.base import TransientSpec, transient_name
from unitctl.systemd.systemctl import transient_argv

SOCK = "/run/unitctl/canary/app/canary.sock"
PID = "/run/unitctl/canary/app/gunicorn.pid"
ADDED = ["--bind", f"unix:{SOCK}", "--pid", PID, "--workers", "1"]


def command(*argv: str) -> list[str]:
    inv = gunicorn.find_invocation(argv)
    assert inv is not None
    return canary.canary_command(inv, socket=SOCK, pidfile=PID)


def test_the_canary_listens_only_on_its_socket_with_one_worker_and_its_own_pid_file() -> None:
    argv = command("/v/bin/gunicorn", "--bind", "127.0.0.1:8000", "-b", "[::1]:8000", "--workers", "4",
                   "--pid", "/run/app.pid", "--max-requests", "100", "app:app")  # fmt: skip
    assert argv == ["/v/bin/gunicorn", "--max-requests", "100", "app:app", *ADDED]


def test_attached_values_go_too_and_a_socket_activated_command_gets_a_bind() -> None:
    assert command("/v/bin/gunicorn", "--bind=0.0.0.0:80", "-w4", "-p/run/x.pid", "app:app") == [
        "/v/bin/gunicorn", "app:app", *ADDED,
    ]  # fmt: skip
    # Socket activation: no --bind at all (LISTEN_FDS); the canary binds its own socket.
    assert command("/v/bin/gunicorn", "--workers", "2", "app:app") == ["/v/bin/gunicorn", "app:app", *ADDED]


def test_options_after_the_executable_of_python_m_gunicorn_and_before_a_double_dash() -> None:
    argv = command("/usr/bin/python3", "-m", "gunicorn", "-c", "conf.py", "app:app")
    assert argv == ["/usr/bin/python3", "-m", "gunicorn", "-c", "conf.py", "app:app", *ADDED]
    assert command("/v/bin/gunicorn", "-b", ":80", "--", "app:app") == ["/v/bin/gunicorn", *ADDED, "--", "app:app"]


def test_a_bind_inside_a_cluster_of_short_options_is_refused_with_the_way_out() -> None:
    with pytest.raises(RefusedError, match="cluster") as info:
        command("/v/bin/gunicorn", "-Db", ":80", "app:app")
    assert "--no-canary" in (info.value.hint or "")
    # A worker count in a cluster stays, and the canary's later --workers 1 wins (argparse keeps the last).
    assert command("/v/bin/gunicorn", "-Rw4", "app:app")[-2:] == ["--workers", "1"]


def test_the_tree_links_untracked_live_entries_never_git_bytecode_or_what_the_release_tracks() -> None:
    live = [".git", ".env", "venv", "instance", "app.py", "old.py", "__pycache__", "x.pyc", "static"]
    tracked = ["app.py", "old.py", "static"]  # old.py is gone in the new release: it must not come back
    new_tree = [".git", "app.py", "new.py", "static", "instance"]  # the release tracks instance/ now
    assert canary.shared_entries(live, tracked, new_tree) == [".env", "venv"]


def test_names_paths_and_mounts() -> None:
    assert canary.unit_name("app.service") == "unitctl-run-app-canary.service"
    assert canary.unit_name("app@blue.service") == "unitctl-run-app-blue-canary.service"
    assert canary.socket_path("app@blue.service") == "/run/unitctl/canary/app-blue/canary.sock"
    tree = canary.Tree(
        path=canary.canary_dir("app.service") / "tree",
        live=canary.canary_dir("app.service").parent / "srv-app",
        link=canary.canary_dir("app.service") / "live" / "checkout",
    )
    ns = tree.namespace()
    assert ns["binds"] == ((str(tree.path), str(tree.live)),)
    assert ns["ro_binds"] == ((str(tree.live), str(tree.link)),)
    assert ns["temporary_fs"] == (str(tree.link.parent),)


def test_systemd_run_starts_the_canary_without_waiting_with_its_mounts() -> None:
    spec = TransientSpec(
        argv=["/bin/true", "x"], user="app", binds=[("/var/lib/c/tree", "/srv/app")],
        ro_binds=[("/srv/app", "/var/lib/c/live/checkout")], temporary_fs=["/var/lib/c/live"],
        runtime_directory="unitctl/canary/app", unit_name="unitctl-run-app-canary.service",
    )  # fmt: skip
    argv = transient_argv(spec, "systemd-run", unit=transient_name(spec), wait=False)
    assert "--wait" not in argv and "--pipe" not in argv
    assert "--property=BindPaths=/var/lib/c/tree:/srv/app" in argv
    assert "--property=BindReadOnlyPaths=/srv/app:/var/lib/c/live/checkout" in argv
    assert "--property=TemporaryFileSystem=/var/lib/c/live:ro" in argv
    assert "--property=RuntimeDirectory=unitctl/canary/app" in argv
    assert "--unit=unitctl-run-app-canary.service" in argv
    with pytest.raises(SystemdError, match="without ':'"):
        transient_argv(TransientSpec(argv=["/bin/true"], binds=[("/a:b", "/c")]), "systemd-run")


def test_only_unitctl_s_own_names_can_be_started() -> None:
    with pytest.raises(SystemdError):
        transient_name(TransientSpec(argv=["/bin/true"], unit_name="app.service"))
    with pytest.raises(SystemdError):
        transient_name(TransientSpec(argv=["/bin/true"]))


def test_the_probe_asks_the_url_s_path_and_host_over_the_canary_s_socket() -> None:
    import httpx

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="ready")

    probe = Probe("http://127.0.0.1:8000/health/ready", uds=SOCK, transport=httpx.MockTransport(handler))
    assert probe.target.display() == f"unix:{SOCK}:/health/ready"
    assert probe.check().ok
    assert seen[0].url.path == "/health/ready" and seen[0].headers["host"] == "127.0.0.1:8000"
