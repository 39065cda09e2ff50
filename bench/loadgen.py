"""A bounded HTTP load for deploy benchmarks: CLIENTS threads, a new connection per request, until a stop file appears.

    python3 bench/loadgen.py URL STOP_FILE OUT_JSON [--clients 8] [--max-seconds 300] [--max-requests 2000000]

Standard library only: it runs inside the sandbox, against an address on the sandbox's own loopback. Every
request is recorded as (start offset, seconds, status or error, the release that answered). The loop stops by
itself at the stop file, --max-seconds or --max-requests, whichever comes first.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import threading
import time
import urllib.parse


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("stop_file")
    parser.add_argument("out")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    args = parser.parse_args()
    target = urllib.parse.urlsplit(args.url)
    host, port, path = target.hostname or "127.0.0.1", target.port or 80, target.path or "/"
    started = time.monotonic()
    deadline = started + args.max_seconds
    stop = threading.Event()
    lock = threading.Lock()
    records: list[tuple[float, float, str, str]] = []

    def client() -> None:
        local: list[tuple[float, float, str, str]] = []
        while not stop.is_set():
            t0 = time.monotonic()
            outcome, release = "", ""
            conn = http.client.HTTPConnection(host, port, timeout=30)
            try:
                conn.request("GET", path, headers={"Connection": "close"})
                resp = conn.getresponse()
                body = resp.read().decode("utf-8", "replace").strip()
                outcome = str(resp.status)
                release = body.removeprefix("release ") if body.startswith("release ") else ""
            except (OSError, http.client.HTTPException) as exc:
                outcome = type(exc).__name__
            finally:
                conn.close()
            local.append((round(t0 - started, 4), round(time.monotonic() - t0, 4), outcome, release))
            if len(local) >= 500:
                with lock:
                    records.extend(local)
                    if len(records) >= args.max_requests:
                        stop.set()
                local = []
        with lock:
            records.extend(local)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    for t in threads:
        t.start()
    while not stop.is_set():
        if os.path.exists(args.stop_file) or time.monotonic() > deadline:
            stop.set()
        time.sleep(0.05)
    for t in threads:
        t.join(timeout=60)
    records.sort()
    with open(args.out + ".tmp", "w") as f:
        json.dump({"seconds": round(time.monotonic() - started, 3), "records": records}, f)
    os.replace(args.out + ".tmp", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
