"""A real systemd to test and demo against: systemd-nspawn booting this machine's own OS.

The container's root is a throwaway overlay of ``/`` (copy-on-write into a tmpfs), so it sees
every host file at the same path (the checkout, its virtual environment, Python) while nothing it
writes reaches the host. It has a private network: ports inside do not clash with the host, and
probes must run inside. Never boot systemd over the host's own root (see docs in shared/).

    with booted() as box:
        box.write_file("/etc/systemd/system/app.service", unit_text)
        box.run(["systemctl", "daemon-reload"], check=True)

Teardown happens on every way out: an exception, Ctrl-C, and SIGTERM (converted into
``SystemExit`` while a sandbox is up, when we are in the main thread). A process killed outright
(kill -9, the OOM killer, a machine or CI runner that stops everything) runs no teardown: its
container keeps running in its own session and its mounts stay. Each sandbox records its owner
(pid and start time) in ``owner``; the next ``booted()`` tears down every sandbox whose owner is gone
(``reap_stale``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from unitctl import sigterm
from unitctl.errors import SandboxError
from unitctl.systemd.systemctl import parse_show

SANDBOX_BASE = Path("/run/unitctl-sandbox")
OWNER = "owner"  # "PID START" of the process that booted a sandbox (START: /proc/PID/stat's starttime)
# A sandbox without an owner file is being set up (the file follows its tmpfs within milliseconds) or was left by
# an older unitctl; it is reaped only once it is this old and no nspawn runs it.
UNOWNED_GRACE_SECONDS = 60
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Directories whose contents systemd empties (or hides behind a tmpfs) when the container boots.
_HIDDEN_IN_CONTAINER = (Path("/tmp"), Path("/var/tmp"))


@dataclass(frozen=True)
class Result:
    """What a command run inside the sandbox did."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> Result:
        """Raise SandboxError unless the command exited 0."""
        if self.returncode != 0:
            raise SandboxError(
                f"command {' '.join(self.argv)!r} exited {self.returncode} inside the sandbox: "
                f"{(self.stderr or self.stdout).strip()[-2000:]}"
            )
        return self


class Sandbox:
    """A booted container: run commands in it, put files in it, read them back."""

    def __init__(self, name: str, base: Path, process: subprocess.Popen[bytes], leader: int) -> None:
        self.name = name
        self.base = base
        self.root = base / "root"
        self.process = process
        self.leader = leader
        self._processes: list[subprocess.Popen[str]] = []  # what popen started, closed by reap()

    def host_path(self, path: str | os.PathLike[str]) -> Path:
        """Return where a container path lives on the host (through the overlay)."""
        p = Path(path)
        if not p.is_absolute():
            raise ValueError(f"sandbox paths must be absolute: {path}")
        return self.root / p.relative_to("/")

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60,
        check: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        input: str | None = None,
    ) -> Result:
        """Run ``argv`` inside the container (all its namespaces) and capture its output."""
        if not argv:
            raise ValueError("empty argv")
        full_env = {
            "PATH": CONTAINER_PATH,
            "LANG": "C.UTF-8",
            "HOME": "/root",
            "SYSTEMD_PAGER": "",
            "TERM": "dumb",
        }
        if env:
            full_env.update(env)
        nsenter = ["nsenter", "-t", str(self.leader), "-a"]
        if cwd:
            nsenter.append(f"--wd={cwd}")
        cmd = [*nsenter, "--", *argv]
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=full_env,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SandboxError(f"command {' '.join(argv)!r} did not finish within {timeout}s in the sandbox") from exc
        result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
        return result.check() if check else result

    def popen(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """Start ``argv`` inside the container without waiting (for signal tests)."""
        full_env = {"PATH": CONTAINER_PATH, "LANG": "C.UTF-8", "HOME": "/root", "TERM": "dumb"}
        if env:
            full_env.update(env)
        proc = subprocess.Popen(
            ["nsenter", "-t", str(self.leader), "-a", "--", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=full_env,
        )
        self._processes.append(proc)
        return proc

    def reap(self) -> None:
        """Kill what ``popen`` started that still runs, wait for it and close its pipes (a test's clean-up)."""
        for proc in self._processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        self._processes.clear()

    def write_file(self, path: str, data: str | bytes, *, mode: int = 0o644) -> None:
        """Create or replace a file inside the container (parents created)."""
        target = self.host_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        target.chmod(mode)

    def read_file(self, path: str) -> bytes:
        return self.host_path(path).read_bytes()

    def exists(self, path: str) -> bool:
        return self.host_path(path).exists()

    def systemctl(self, *args: str, check: bool = False, timeout: float = 60) -> Result:
        return self.run(["systemctl", *args], check=check, timeout=timeout)

    def unit_properties(self, unit: str, *props: str) -> dict[str, str]:
        """Return ``systemctl show -p ...`` of ``unit`` as a dict."""
        return parse_show(self.systemctl("show", unit, *(f"--property={p}" for p in props), check=True).stdout)

    def wait_for(self, unit: str, states: Sequence[str], *, timeout: float = 20, prop: str = "ActiveState") -> str:
        """Wait until ``unit``'s ``prop`` is one of ``states``; return it (raise SandboxError on timeout)."""
        deadline = time.monotonic() + timeout
        value = ""
        while time.monotonic() < deadline:
            value = self.unit_properties(unit, prop).get(prop, "")
            if value in states:
                return value
            time.sleep(0.1)
        raise SandboxError(f"{unit} {prop} stayed {value!r}, expected one of {list(states)} within {timeout}s")


def check_host() -> None:
    """Raise SandboxError with what to do when this host cannot boot a sandbox."""
    if os.geteuid() != 0:
        raise SandboxError(
            "the systemd sandbox needs root (it mounts an overlay and boots systemd-nspawn)",
            hint="run the tests as root",
        )
    if shutil.which("systemd-nspawn") is None:
        raise SandboxError("systemd-nspawn is not installed", hint="apt-get install systemd-container")
    if shutil.which("nsenter") is None:
        raise SandboxError("nsenter is not installed", hint="apt-get install util-linux")
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError as exc:
        raise SandboxError("cannot read /proc/filesystems to check for overlayfs") from exc
    if "overlay" not in filesystems:
        subprocess.run(["modprobe", "overlay"], capture_output=True, check=False)
        if "overlay" not in Path("/proc/filesystems").read_text():
            raise SandboxError("the kernel has no overlay filesystem", hint="load it with 'modprobe overlay'")


def _needs_bind(path: Path) -> bool:
    """True when the container would not see ``path`` through the overlay of /."""
    resolved = path.resolve()
    if any(resolved == h or h in resolved.parents for h in _HIDDEN_IN_CONTAINER):
        return True
    try:
        return resolved.stat().st_dev != Path("/").stat().st_dev
    except OSError:
        return False


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SandboxError(f"mount {' '.join(args)} failed: {proc.stderr.strip()}")


def _umount(path: Path) -> None:
    if not path.is_mount():
        return
    proc = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        # Something inside still holds it (a process that outlived the container): detach lazily.
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _find_leader(process: subprocess.Popen[bytes], deadline: float) -> int:
    """The container's PID 1 is the nspawn process's child."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            pids = children.read_text().split()
        except OSError:
            pids = []
        if pids:
            return int(pids[0])
        time.sleep(0.05)
    raise SandboxError("systemd-nspawn did not start a container")


@contextlib.contextmanager
def booted(
    name: str | None = None,
    *,
    mask: Sequence[str] = ("postgresql.service",),
    bind_ro: Sequence[str | os.PathLike[str]] = (),
    boot_timeout: float = 60,
) -> Iterator[Sandbox]:
    """Boot a throwaway container, yield it once systemd inside is running, tear it down on every path out.

    ``bind_ro`` lists host paths the container must see although the overlay would not show them
    (under /tmp, or on another file system); the others need no binding.
    """
    check_host()
    reap_stale()
    name = name or f"unitctl-{uuid.uuid4().hex[:10]}"
    base = SANDBOX_BASE / name
    root = base / "root"
    process: subprocess.Popen[bytes] | None = None
    with sigterm.raising(_exit_status):
        try:
            base.mkdir(parents=True, exist_ok=False)
            _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(base))
            (base / OWNER).write_text(_owner_id(os.getpid()) or "")
            for sub in ("upper", "work", "root"):
                (base / sub).mkdir()
            _mount(
                "-t", "overlay", "overlay",
                "-o", f"lowerdir=/,upperdir={base / 'upper'},workdir={base / 'work'}",
                str(root),
            )  # fmt: skip
            args = [
                "systemd-nspawn", "-D", str(root), "--keep-unit", "--register=no", "--private-network",
                "--link-journal=no", f"--machine={name}", "-q",
            ]  # fmt: skip
            for path in bind_ro:
                p = Path(path).resolve()
                if _needs_bind(p):
                    args.append(f"--bind-ro={p}")
            args += ["-b", "--", "systemd.unit=multi-user.target"]
            args += [f"systemd.mask={unit}" for unit in mask]
            log = (base / "nspawn.log").open("wb")
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            log.close()
            deadline = time.monotonic() + boot_timeout
            leader = _find_leader(process, deadline)
            box = Sandbox(name, base, process, leader)
            state = ""
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise SandboxError(f"the container exited during boot: {_tail(base / 'nspawn.log')}")
                state = box.run(["systemctl", "is-system-running"], timeout=10).stdout.strip()
                if state in ("running", "degraded"):
                    break
                time.sleep(0.1)
            else:
                raise SandboxError(f"systemd in the sandbox did not finish booting (state {state!r})")
            try:
                yield box
            finally:
                box.reap()
        finally:
            _teardown(name, base, process)


def _exit_status(signum: int) -> SystemExit:
    """Return the SystemExit a shell reports for a process killed by ``signum`` (the teardown runs on the way)."""
    return SystemExit(128 + signum)


def _tail(path: Path, n: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _teardown(name: str, base: Path, process: subprocess.Popen[bytes] | None) -> None:
    """Halt the container, unmount the overlay and the tmpfs, remove the directories."""
    # Signals during teardown would leave mounts behind: hold them off until we are done.
    blocked = {signal.SIGINT, signal.SIGTERM}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        _umount(base / "root")
        _umount(base)
        with contextlib.suppress(OSError):
            base.rmdir()
        with contextlib.suppress(OSError):
            SANDBOX_BASE.rmdir()
        # nspawn leaves an empty propagation directory behind.
        with contextlib.suppress(OSError):
            Path("/run/systemd/nspawn/propagate", name).rmdir()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _owner_id(pid: int) -> str | None:
    """Return "PID START" for a live process (a reused pid has another start time), None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces and parentheses): starttime is field 22.
    return f"{pid} {stat.rsplit(')', 1)[1].split()[19]}"


def _nspawn_pids(name: str) -> list[int]:
    """Return the pids of the systemd-nspawn processes running the sandbox ``name``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline[0].endswith(b"systemd-nspawn") and f"--machine={name}".encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def _is_stale(base: Path) -> bool:
    """True when the process that booted ``base`` is gone (or, without an owner file, nothing runs it any more)."""
    try:
        owner = (base / OWNER).read_text().strip()
    except OSError:
        owner = ""
    if owner:
        return _owner_id(int(owner.split()[0])) != owner
    try:
        age = time.time() - base.stat().st_mtime
    except OSError:
        return False
    return age > UNOWNED_GRACE_SECONDS and not _nspawn_pids(base.name)


def _stop(pid: int) -> None:
    """Terminate an orphaned nspawn (it halts its container), then kill it if it does not end."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def reap_stale() -> list[str]:
    """Tear down the sandboxes whose booting process died without its teardown; return their names."""
    if not SANDBOX_BASE.is_dir():
        return []
    reaped = []
    for base in sorted(SANDBOX_BASE.iterdir()):
        if not base.is_dir() or not _is_stale(base):
            continue
        for pid in _nspawn_pids(base.name):
            _stop(pid)
        _teardown(base.name, base, None)
        # Unmounted, a directory left with files is on the host's /run itself (written after a lazy unmount):
        # ours to remove, once nothing is mounted below it.
        if base.exists() and not any(m.startswith(f"mount {base}") for m in leftovers()):
            shutil.rmtree(base, ignore_errors=True)
            with contextlib.suppress(OSError):
                SANDBOX_BASE.rmdir()
        reaped.append(base.name)
    return reaped


def leftovers() -> list[str]:
    """Return sandbox mounts or nspawn processes still present (for tests and the demo's own check)."""
    found: list[str] = []
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[1].startswith(str(SANDBOX_BASE)):
            found.append(f"mount {fields[1]}")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmdline
            and cmdline[0].endswith(b"systemd-nspawn")
            and any(a.startswith(b"--machine=unitctl-") for a in cmdline)
        ):
            found.append(f"process {proc.name} {b' '.join(cmdline).decode(errors='replace')[:120]}")
    return found
