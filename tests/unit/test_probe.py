"""The readiness probe: URL forms, answers and failures as data, nothing followed, secrets masked."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from known_warnings import HTTPCORE_UNIX_CONNECT_LEAK

from unitctl.errors import UsageError
from unitctl.probe import Probe, parse_target, sanitize_excerpt


def mock(handler: object) -> httpx.MockTransport:
    return httpx.MockTransport(handler)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "url", "uds"),
    [
        ("http://127.0.0.1:8000/health/ready", "http://127.0.0.1:8000/health/ready", None),
        ("https://app.internal/ready?deep=1", "https://app.internal/ready?deep=1", None),
        ("unix:/run/app.sock:/health/ready", "http://localhost/health/ready", "/run/app.sock"),
        ("unix:/run/app.sock", "http://localhost/", "/run/app.sock"),
        ("unix:/run/app.sock:/q?x=1", "http://localhost/q?x=1", "/run/app.sock"),
    ],
)
def test_parse_target(spec: str, url: str, uds: str | None) -> None:
    target = parse_target(spec)
    assert (target.url, target.uds) == (url, uds)


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("ftp://host/x", r"not an http\(s\) URL"),
        ("127.0.0.1:8000/ready", r"not an http\(s\) URL"),
        ("http:///ready", r"not an http\(s\) URL"),
        ("unix:run/app.sock:/x", "must be absolute"),
        ("unix:/run/app.sock:ready", "must start with '/'"),
        ("http://user:pw@host/ready", "credentials"),
        ("http://host:99999/ready", "invalid port"),
    ],
)
def test_bad_urls_are_usage_errors(spec: str, text: str) -> None:
    with pytest.raises(UsageError, match=text) as info:
        parse_target(spec)
    assert "\n" not in str(info.value) and "unix:/run/app.sock:/health/ready" in str(info.value)


def test_2xx_is_ready_with_excerpt() -> None:
    probe = Probe("http://127.0.0.1:1/r", transport=mock(lambda r: httpx.Response(204)))
    res = probe()
    assert res.ok and res.status_code == 204 and res.error is None and res.elapsed >= 0


def test_503_is_not_ready_and_describes_the_body() -> None:
    probe = Probe("http://127.0.0.1:1/r", transport=mock(lambda r: httpx.Response(503, text="db\nnot\tready")))
    res = probe.check()
    assert not res.ok and res.status_code == 503 and res.body_excerpt == "db not ready"
    assert res.describe() == "HTTP 503 (db not ready)"


def test_redirect_is_reported_not_followed() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(301, headers={"Location": "https://other.example/login"})

    res = Probe("http://127.0.0.1:1/ready", transport=mock(handler))()
    assert not res.ok and res.status_code == 301
    assert res.error == "redirect to https://other.example/login (not followed)"
    assert seen == ["http://127.0.0.1:1/ready"]


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "connection refused at http://127.0.0.1:1/r"),
        (httpx.ConnectError("[Errno -2] Name or service not known"), "cannot resolve host"),
        (httpx.ConnectTimeout("timed out"), "timed out after 2s"),
        (httpx.ReadTimeout("timed out"), "timed out after 2s (ReadTimeout)"),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), "RemoteProtocolError"),
    ],
)
def test_network_failures_are_not_ready_with_the_reason(exc: Exception, text: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    res = Probe("http://127.0.0.1:1/r", transport=mock(handler))()
    assert not res.ok and res.status_code is None and res.error is not None
    assert text in res.error and res.describe() == res.error


def test_secrets_and_control_chars_are_masked_in_excerpts() -> None:
    body = "error: password=hunter2 token: abc\x1b[31m red\x00" + "x" * 500
    text = sanitize_excerpt(body)
    assert "hunter2" not in text and "abc" not in text and "\x1b" not in text and "\x00" not in text
    assert "password=****" in text and len(text) == 200


def test_probe_timeout_must_be_positive() -> None:
    with pytest.raises(UsageError, match="positive"):
        Probe("http://127.0.0.1:1/", timeout=0)


# -- real sockets (no systemd needed) -----------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path == "/ok" else 503
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_real_tcp_server(server: int) -> None:
    with Probe(f"http://127.0.0.1:{server}/ok") as probe:
        assert probe().ok
    with Probe(f"http://127.0.0.1:{server}/nope") as probe:
        res = probe()
        assert res.status_code == 503 and res.body_excerpt == "hello"


def test_real_refused_port() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    res = Probe(f"http://127.0.0.1:{port}/ok", timeout=2)()
    assert not res.ok and res.error == f"connection refused at http://127.0.0.1:{port}/ok"


@HTTPCORE_UNIX_CONNECT_LEAK
def test_real_missing_unix_socket(tmp_path: Path) -> None:
    res = Probe(f"unix:{tmp_path}/absent.sock:/ready", timeout=2)()
    assert not res.ok and res.error == f"socket {tmp_path}/absent.sock does not exist"


def test_real_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        got.append(conn.recv(4096))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    res = Probe(f"unix:{path}:/health/ready", timeout=5)()
    thread.join(5)
    listener.close()
    assert res.ok and res.body_excerpt == "ok"
    assert got and got[0].startswith(b"GET /health/ready HTTP/1.1\r\n")
