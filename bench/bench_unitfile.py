"""Parse and re-serialize every unit and drop-in shipped on this machine; compare with stdlib configparser.

    .venv/bin/python bench/bench_unitfile.py [DIR ...]

Prints figures only (no assertions): files/s, how many files come back byte-identical, how many
Exec*= values execline.split accepts, and for the same files stdlib configparser
(strict=False, interpolation=None): how many it parses and how many it writes back byte-identical.
Then a table of lines -> seconds for 'unitctl rewrite --workers 3 --no-preload' of an ExecStart= with
2.5k/5k/10k/20k continuation lines (one Gunicorn option each): the time must grow linearly.
"""

from __future__ import annotations

import configparser
import io
import os
import sys
import time
from pathlib import Path

from unitctl import execline
from unitctl.errors import UnitSyntaxError
from unitctl.rewrite import RewriteSpec, rewrite_unit
from unitctl.unitfile import UnitFile

DEFAULT_DIRS = ("/usr/lib/systemd/system", "/lib/systemd/system")
UNIT_SUFFIXES = {
    ".service", ".socket", ".target", ".timer", ".mount", ".automount", ".path", ".slice", ".scope", ".swap",
    ".device",
}  # fmt: skip


def collect(dirs: list[str]) -> list[Path]:
    """Return every unit file and drop-in (*.d/*.conf) under dirs, each real file once."""
    seen: dict[str, Path] = {}
    for d in dirs:
        for dirpath, _dirnames, filenames in os.walk(d, followlinks=False):
            for name in filenames:
                p = Path(dirpath) / name
                is_dropin = p.parent.name.endswith(".d") and p.suffix == ".conf"
                if not (p.suffix in UNIT_SUFFIXES or is_dropin):
                    continue
                real = os.path.realpath(p)
                if real == os.devnull or not os.path.isfile(real):
                    continue  # masked or dangling
                seen.setdefault(real, p)
    return sorted(seen.values())


def bench_unitctl(blobs: list[tuple[Path, bytes]]) -> None:
    identical = refused = 0
    exec_ok = exec_bad = 0
    t0 = time.perf_counter()
    parsed: list[UnitFile] = []
    for path, data in blobs:
        try:
            u = UnitFile.from_bytes(data, path=str(path))
        except UnitSyntaxError as exc:
            refused += 1
            print(f"  refused: {exc}")
            continue
        identical += u.to_bytes() == data
        parsed.append(u)
    elapsed = time.perf_counter() - t0
    for u in parsed:
        for e in u.all_entries():
            if e.key.startswith("Exec") and e.value:
                try:
                    execline.split(e.value)
                    exec_ok += 1
                except execline.ExecSyntaxError as exc:
                    exec_bad += 1
                    print(f"  exec refused: {e.path}:{e.line}: {exc}")
    n = len(blobs)
    print(
        f"unitctl.unitfile : {n / elapsed:10.0f} files/s  byte-identical {identical}/{n}  "
        f"refused {refused}  Exec*= values split {exec_ok}/{exec_ok + exec_bad}"
    )


def bench_configparser(blobs: list[tuple[Path, bytes]]) -> None:
    parsed = identical = 0
    t0 = time.perf_counter()
    for _path, data in blobs:
        text = data.decode("utf-8", "surrogateescape")
        cp = configparser.ConfigParser(strict=False, interpolation=None)
        try:
            cp.read_string(text)
        except configparser.Error:
            continue
        parsed += 1
        out = io.StringIO()
        cp.write(out)
        identical += out.getvalue() == text
    elapsed = time.perf_counter() - t0
    n = len(blobs)
    print(f"configparser     : {n / elapsed:10.0f} files/s  parsed {parsed}/{n}  byte-identical {identical}/{n}")


CONTINUATION_LINES = (2_500, 5_000, 10_000, 20_000)


def continuation_unit(lines: int) -> str:
    """Return a unit whose ExecStart= runs over ``lines`` continuation lines, one Gunicorn option on each."""
    body = "".join(f"    --env VAR_{i}=value \\\n" for i in range(lines))
    return f"[Service]\nExecStart=/srv/app/venv/bin/gunicorn --preload \\\n{body}    --workers 9 app:app\n"


def bench_continuations() -> None:
    print("lines    seconds  (parse + rewrite --workers 3 --no-preload + serialize, one ExecStart=)")
    for lines in CONTINUATION_LINES:
        text = continuation_unit(lines)
        t0 = time.perf_counter()
        result = rewrite_unit(text, RewriteSpec(workers=3, no_preload=True, cpu_count=2), read_file=lambda _path: None)
        elapsed = time.perf_counter() - t0
        assert result.changed and "--preload" not in result.text  # the figure is for a rewrite that happened
        print(f"{lines:>6} {elapsed:9.2f}")


def main(argv: list[str]) -> int:
    dirs = argv or [d for d in DEFAULT_DIRS if os.path.isdir(d)]
    paths = collect(dirs)
    if not paths:
        print(f"no unit files under {', '.join(dirs)}", file=sys.stderr)
        return 1
    blobs = [(p, p.read_bytes()) for p in paths]
    total = sum(len(b) for _, b in blobs)
    dropins = sum(p.suffix == ".conf" for p in paths)
    print(f"{len(blobs)} files ({dropins} drop-ins, {total / 1024:.0f} KiB) from {', '.join(dirs)}")
    bench_unitctl(blobs)
    bench_configparser(blobs)
    bench_continuations()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
