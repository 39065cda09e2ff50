"""A rendered unit passes systemd-analyze verify and really runs Gunicorn under systemd in the sandbox."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from unitctl import sandbox as sandbox_mod

pytestmark = pytest.mark.systemd

APP = textwrap.dedent(
    """\
    import json, os

    def app(environ, start_response):
        body = {
            "cwd": os.getcwd(),
            "uid": os.getuid(),
            "greeting": os.environ.get("GREETING"),
            "percent": os.environ.get("PERCENT"),
            "xdg": os.environ.get("XDG_RUNTIME_DIR"),
            "from_file": os.environ.get("FROM_FILE"),
            "pid": os.getpid(),
        }
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    def make(*args):
        def factory_app(environ, start_response):
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps({"args": list(args)}).encode()]
        return factory_app
    """
)

FETCH_TCP = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
FETCH_UNIX = textwrap.dedent(
    """\
    import socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sys.argv[1])
    s.sendall(b"GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    print(data.split(b"\\r\\n\\r\\n", 1)[1].decode())
    """
)

GREETING = 'say "hi" to $USER, 100% sure, C:\\dir'


def _python() -> str:
    return str(Path(sys.prefix) / "bin" / "python")


def _fetch(box: sandbox_mod.Sandbox, url: str) -> dict[str, object]:
    out = box.run([_python(), "-c", FETCH_TCP, url], check=True).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def _workers(box: sandbox_mod.Sandbox, unit: str, expected: int) -> int:
    """Return how many children the unit's Gunicorn master has once they reach ``expected`` (or 10 s pass)."""
    pid = box.unit_properties(unit, "MainPID")["MainPID"]
    deadline = time.monotonic() + 10
    count = -1
    while time.monotonic() < deadline:
        count = len(box.run(["ps", "--ppid", pid, "-o", "pid="]).stdout.split())
        if count == expected:
            break
        time.sleep(0.2)
    return count


def _is_socket(box: sandbox_mod.Sandbox, path: str, timeout: float = 10) -> bool:
    """Return True once ``path`` is a unix socket inside the container (/run is the container's own tmpfs)."""
    deadline = time.monotonic() + timeout
    while not box.run(["test", "-S", path]).ok:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def _start(box: sandbox_mod.Sandbox, unit: str) -> None:
    started = box.systemctl("start", unit)
    journal = box.run(["journalctl", "-u", unit, "--no-pager", "-n", "30"]).stdout
    assert started.ok, journal


def _setup(box: sandbox_mod.Sandbox, name: str) -> None:
    box.write_file(f"/srv/{name}/webapp.py", APP)
    # This machine's Python lives under /root (mode 0700): let the service user traverse it, inside the
    # throwaway container only, as any real deployment's venv must be reachable by its user.
    interpreter = Path(sys.executable).resolve()
    if Path("/root") in interpreter.parents:
        box.run(["chmod", "o+x", "/root"], check=True)
    if not box.run(["id", name]).ok:
        box.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)


def test_rendered_unit_verifies_starts_serves_and_reloads(box: sandbox_mod.Sandbox, venv_bin: Path) -> None:
    name = "rtest-tcp"
    _setup(box, name)
    unit_path = f"/etc/systemd/system/{name}.service"
    box.write_file(f"/etc/{name}/env", "FROM_FILE=yes\n", mode=0o600)
    rendered = box.run(
        [
            str(venv_bin / "unitctl"), "render", "--name", name, "--app", "webapp:app", "--workers", "3",
            "--bind", "127.0.0.1:8211", "--working-dir", f"/srv/{name}", "--venv", sys.prefix,
            "--user", name, "--group", name, "--env", f"GREETING={GREETING}", "--env", "PERCENT=%h",
            "--env-file", f"/etc/{name}/env", "--env-file", f"-/etc/{name}/optional-and-missing", "-o", unit_path,
        ],
        check=True,
    )  # fmt: skip
    assert f"wrote {unit_path}" in rendered.stderr
    verified = box.run(["systemd-analyze", "verify", "--man=no", unit_path])
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified
    ours = box.run([str(venv_bin / "unitctl"), "verify", unit_path])
    assert ours.returncode == 0, ours

    box.systemctl("daemon-reload", check=True)
    _start(box, f"{name}.service")
    assert box.wait_for(f"{name}.service", ["active"]) == "active"

    body = _fetch(box, "http://127.0.0.1:8211/")
    uid = int(box.run(["id", "-u", name], check=True).stdout)
    assert body["cwd"] == f"/srv/{name}"
    assert body["uid"] == uid
    # Environment= quoting: quotes, $, % and backslashes arrive exactly as given.
    assert body["greeting"] == GREETING
    assert body["percent"] == "%h"
    assert body["xdg"] == f"/run/{name}"
    assert body["from_file"] == "yes"  # EnvironmentFile= (root-only 0600; systemd reads it before dropping privileges)
    assert _workers(box, f"{name}.service", 3) == 3
    # The control socket (Gunicorn >= 25.1) lands in the service's own runtime directory.
    assert _is_socket(box, f"/run/{name}/gunicorn.ctl")

    main_pid = box.unit_properties(f"{name}.service", "MainPID")["MainPID"]
    box.systemctl("reload", f"{name}.service", check=True)
    assert box.wait_for(f"{name}.service", ["active"]) == "active"
    assert box.unit_properties(f"{name}.service", "MainPID")["MainPID"] == main_pid
    assert _fetch(box, "http://127.0.0.1:8211/")["greeting"] == GREETING


def test_socket_activation_hands_the_sockets_to_gunicorn(box: sandbox_mod.Sandbox, venv_bin: Path) -> None:
    name = "rtest-sock"
    _setup(box, name)
    unit_path = f"/etc/systemd/system/{name}.service"
    box.run(
        [
            str(venv_bin / "unitctl"), "render", "--name", name, "--app", "webapp:app", "--workers", "2",
            "--bind", f"unix:/run/{name}/{name}.sock", "--bind", "127.0.0.1:8212", "--socket",
            "--working-dir", f"/srv/{name}", "--venv", sys.prefix, "--user", name, "-o", unit_path,
        ],
        check=True,
    )  # fmt: skip
    socket_path = f"/etc/systemd/system/{name}.socket"
    assert box.exists(socket_path)
    verified = box.run(["systemd-analyze", "verify", "--man=no", unit_path, socket_path])
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified

    box.systemctl("daemon-reload", check=True)
    box.systemctl("start", f"{name}.socket", check=True)
    assert box.unit_properties(f"{name}.service", "ActiveState")["ActiveState"] == "inactive"

    exec_start = box.unit_properties(f"{name}.service", "ExecStart")["ExecStart"]
    assert "--bind" not in exec_start, exec_start

    # The first connection starts the service; Gunicorn (without --bind) serves on the fds systemd passed it.
    body = _fetch(box, "http://127.0.0.1:8212/")
    assert body["cwd"] == f"/srv/{name}"
    assert box.wait_for(f"{name}.service", ["active"]) == "active"
    out = box.run([_python(), "-c", FETCH_UNIX, f"/run/{name}/{name}.sock"], check=True).stdout
    assert json.loads(out)["cwd"] == f"/srv/{name}"

    # Stopping the service keeps the socket file (RuntimeDirectoryPreserve=yes), so activation works again.
    box.systemctl("stop", f"{name}.service", check=True)
    assert _is_socket(box, f"/run/{name}/{name}.sock", timeout=0)
    assert box.unit_properties(f"{name}.service", "ActiveState")["ActiveState"] in ("inactive", "failed")
    out = box.run([_python(), "-c", FETCH_UNIX, f"/run/{name}/{name}.sock"], check=True).stdout
    assert json.loads(out)["cwd"] == f"/srv/{name}"
    assert box.wait_for(f"{name}.service", ["active"]) == "active"
    box.systemctl("stop", f"{name}.service", f"{name}.socket", check=True)


def test_render_diff_rewrite_drop_in_lifecycle(box: sandbox_mod.Sandbox, venv_bin: Path) -> None:
    """diff reads the installed unit as systemd does: a drop-in written by rewrite is what systemd runs."""
    name = "rtest-life"
    _setup(box, name)
    unitctl = str(venv_bin / "unitctl")
    render_args = [
        "--app", "webapp:app", "--workers", "2", "--bind", "127.0.0.1:8213", "--working-dir", f"/srv/{name}",
        "--venv", sys.prefix, "--user", name,
    ]  # fmt: skip
    box.run([unitctl, "render", "--name", name, *render_args, "-o", f"/etc/systemd/system/{name}.service"], check=True)
    box.systemctl("daemon-reload", check=True)
    _start(box, f"{name}.service")
    assert _workers(box, f"{name}.service", 2) == 2

    same = box.run([unitctl, "diff", name, "--render", *render_args])
    assert same.returncode == 0 and same.stdout == "no changes\n", same
    pending = box.run([unitctl, "diff", name, "--workers", "3"])
    assert pending.returncode == 1, pending
    assert pending.stdout.endswith("workers 2 → 3\n")

    written = box.run(
        [
            unitctl,
            "rewrite",
            f"/etc/systemd/system/{name}.service",
            "--workers",
            "3",
            "--drop-in",
            "/etc/systemd/system",
        ]
    )
    assert written.returncode == 0, written
    dropin = f"/etc/systemd/system/{name}.service.d/50-unitctl.conf"
    assert "+ExecStart=\n" in written.stderr  # the diff came first
    box.systemctl("daemon-reload", check=True)
    assert dropin in box.unit_properties(f"{name}.service", "DropInPaths")["DropInPaths"]
    box.systemctl("restart", f"{name}.service", check=True)
    assert _workers(box, f"{name}.service", 3) == 3  # systemd runs the drop-in's command line

    # With the drop-in installed, the desired state is already what systemd runs.
    assert box.run([unitctl, "diff", name, "--workers", "3"]).returncode == 0
    # The main file is unchanged (it still says 2): rendering the same options matches it, drop-in on both sides.
    again = box.run([unitctl, "diff", name, "--render", *render_args])
    assert again.returncode == 0, again


def test_execstart_quoting_reaches_gunicorn_literally(box: sandbox_mod.Sandbox, venv_bin: Path) -> None:
    """%, $, quotes and spaces in ExecStart= words arrive in Gunicorn exactly as given to render."""
    name = "rtest-quote"
    _setup(box, name)
    args = ["100% sure", "$HOME and ${USER}", 'say "hi"', "back\\slash"]
    app = "webapp:make(" + ", ".join(repr(a) for a in args) + ")"
    unit_path = f"/etc/systemd/system/{name}.service"
    box.run(
        [
            str(venv_bin / "unitctl"), "render", "--name", name, "--app", app, "--workers", "1",
            "--bind", "127.0.0.1:8214", "--working-dir", f"/srv/{name}", "--venv", sys.prefix, "--user", name,
            "-o", unit_path,
        ],
        check=True,
    )  # fmt: skip
    box.systemctl("daemon-reload", check=True)
    _start(box, f"{name}.service")
    assert _fetch(box, "http://127.0.0.1:8214/") == {"args": args}


def test_a_template_cannot_run_code_as_root(box: sandbox_mod.Sandbox, venv_bin: Path) -> None:
    """The issue's template, rendered by root in the sandbox: refused in one line, exit 3, nothing ran."""
    folder = "/srv/evil-template"
    marker = f"{folder}/pwned"
    box.run(["mkdir", "-p", folder], check=True)
    box.run(["rm", "-f", marker], check=True)
    attack = f"{{{{ cycler.__init__.__globals__.os.popen('id > {marker}').read() }}}}"
    box.write_file(f"{folder}/unit.j2", f"[Service]\nExecStart={{{{ exec_start }}}}\n# {attack}\n")
    res = box.run(
        ["env", "-C", "/srv", str(venv_bin / "unitctl"), "render", "--name", "evil", "--app", "app:app",
         "--template", f"{folder}/unit.j2"]
    )  # fmt: skip
    assert box.run(["id", "-u"], check=True).stdout.strip() == "0"  # it ran as root
    assert res.returncode == 3, res.stdout + res.stderr
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"unitctl: error: {folder}/unit.j2:3: "), res.stderr
    assert "sandbox refuses" in lines[0] and "Traceback" not in res.stderr
    assert not box.run(["test", "-e", marker]).ok
    # An include next to the template works; one outside its folder is refused in one line.
    box.write_file(f"{folder}/part.j2", "User={{ user }}\n")
    box.write_file(f"{folder}/ok.j2", "[Service]\n{% include 'part.j2' %}ExecStart={{ exec_start }}\n")
    ok = box.run(
        [str(venv_bin / "unitctl"), "render", "--name", "fine", "--app", "app:app", "--user", "web",
         "--workers", "2", "--template", f"{folder}/ok.j2"]
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("[Service]\nUser=web\nExecStart=gunicorn --workers 2 ")
    box.write_file(f"{folder}/out.j2", "{% include '../../etc/shadow' %}\n")
    unitctl = str(venv_bin / "unitctl")
    out = box.run([unitctl, "render", "--name", "x", "--app", "a:b", "--template", f"{folder}/out.j2"])
    assert out.returncode == 3 and out.stdout == ""
    assert out.stderr.startswith(f"unitctl: error: {folder}/out.j2:1: cannot include: ") and "root:" not in out.stderr
