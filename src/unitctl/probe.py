"""Readiness probe: one GET of the configured URL, over TCP or a unix socket, reported as data.

URL forms (the only two accepted):

    http://127.0.0.1:8000/health/ready        (or https://...)
    unix:/run/app.sock:/health/ready          a unix socket, as Gunicorn's --bind spells it, then
                                              ':' and the HTTP path (default '/'); the Host header
                                              is 'localhost'

Only that URL is asked: redirects are not followed (a 3xx is a not-ready answer, reported as
such), so a probe never talks to another host. httpx is imported when a Probe is built.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from unitctl import masking
from unitctl.errors import UsageError

if TYPE_CHECKING:
    import httpx

EXCERPT_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class ProbeResult:
    """What one readiness request got back."""

    ok: bool  # a 2xx answer
    status_code: int | None  # None when no HTTP answer came back
    error: str | None  # why there was no answer (refused, timeout, DNS, ...), or why a status is not ready
    elapsed: float  # seconds the request took
    body_excerpt: str = ""  # first characters of the body, one line, secrets masked

    def describe(self) -> str:
        """Return a one-line summary such as 'HTTP 503 (starting)' or 'connection refused'."""
        if self.status_code is None:
            return self.error or "no answer"
        text = f"HTTP {self.status_code}"
        if self.error:
            text += f" ({self.error})"
        elif self.body_excerpt and not self.ok:
            text += f" ({self.body_excerpt[:160]})"
        return text


@dataclass(frozen=True)
class Target:
    """Where a probe goes: the URL httpx requests and the unix socket it goes through, if any."""

    url: str
    uds: str | None = None

    def display(self) -> str:
        if self.uds:
            return f"unix:{self.uds}:{urlsplit(self.url).path or '/'}"
        return self.url


def parse_target(spec: str) -> Target:
    """Parse a probe URL (http[s]://... or unix:/path.sock:/http/path); raise UsageError if malformed."""
    hint = "use http://HOST:PORT/PATH, https://... or unix:/run/app.sock:/health/ready"
    if spec.startswith("unix:"):
        rest = spec[len("unix:") :]
        # The socket path ends at the first ':' (socket paths with ':' are not supported).
        sock, sep, path = rest.partition(":")
        if not sock.startswith("/"):
            raise UsageError(f"probe URL {spec!r}: the unix socket path must be absolute", hint=hint)
        path = path if sep else "/"
        if not path.startswith("/"):
            raise UsageError(f"probe URL {spec!r}: the HTTP path after the socket must start with '/'", hint=hint)
        return Target(url=f"http://localhost{path}", uds=sock)
    try:
        parts = urlsplit(spec)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise UsageError(f"probe URL {spec!r} is not a valid URL: {exc}", hint=hint) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"probe URL {spec!r} is not an http(s) URL or a unix socket", hint=hint)
    if parts.username or parts.password:
        raise UsageError(f"probe URL {spec!r} must not carry credentials", hint=hint)
    try:
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        raise UsageError(f"probe URL {spec!r} has an invalid port", hint=hint) from None
    return Target(url=spec)


def sanitize_excerpt(body: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """Return a short single-line excerpt of ``body`` with control characters and secret values masked."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    # Masked before it is cut: a secret cut in half would no longer be recognised.
    text = masking.mask(text[: limit * 8])
    text = _CONTROL.sub(" ", text).replace("\n", " ").replace("\t", " ")
    return " ".join(text.split())[:limit]


class Probe:
    """A reusable readiness check of one URL; call it to get a ProbeResult."""

    def __init__(
        self,
        url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 2.0,
        uds: str | None = None,
    ) -> None:
        """Probe ``url``; with ``uds``, ask its path and Host over that unix socket instead (a canary's)."""
        import httpx

        if timeout <= 0:
            raise UsageError(f"probe timeout must be positive, got {timeout}")
        self.target = parse_target(url)
        if uds is not None:
            if not uds.startswith("/"):
                raise UsageError(f"probe socket {uds!r} must be an absolute path")
            self.target = Target(url=self.target.url, uds=uds)
        self.timeout = timeout
        if transport is None and self.target.uds:
            transport = httpx.HTTPTransport(uds=self.target.uds, retries=0)
        self._client = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,  # no proxies from the environment: only the configured URL is asked
            headers={"User-Agent": "unitctl-probe", "Connection": "close"},
        )

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying HTTP client."""
        self._client.close()

    def __call__(self) -> ProbeResult:
        return self.check()

    def check(self) -> ProbeResult:
        """Send one GET and report the answer, never raising for network trouble."""
        import httpx

        started = time.monotonic()
        try:
            with self._client.stream("GET", self.target.url) as response:
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) >= EXCERPT_CHARS * 4:
                        break
        except httpx.TimeoutException as exc:
            return self._fail(started, f"timed out after {self.timeout:g}s ({type(exc).__name__})")
        except httpx.ConnectError as exc:
            return self._fail(started, _connect_reason(exc, self.target))
        except httpx.HTTPError as exc:
            return self._fail(started, f"{type(exc).__name__}: {sanitize_excerpt(str(exc), 120)}")
        except OSError as exc:
            return self._fail(started, f"{type(exc).__name__}: {exc.strerror or exc}")
        elapsed = time.monotonic() - started
        code = response.status_code
        excerpt = sanitize_excerpt(body)
        if 200 <= code < 300:
            return ProbeResult(True, code, None, elapsed, excerpt)
        if 300 <= code < 400:
            location = sanitize_excerpt(response.headers.get("location", ""), 100)
            return ProbeResult(False, code, f"redirect to {location or '?'} (not followed)", elapsed, excerpt)
        return ProbeResult(False, code, None, elapsed, excerpt)

    def _fail(self, started: float, reason: str) -> ProbeResult:
        return ProbeResult(False, None, reason, time.monotonic() - started)


def _connect_reason(exc: Exception, target: Target) -> str:
    text = str(exc)
    low = text.lower()
    where = target.display()
    if "refused" in low:
        return f"connection refused at {where}"
    if "no such file" in low:
        return f"socket {target.uds} does not exist"
    if "name or service not known" in low or "nodename nor servname" in low or "name resolution" in low:
        return f"cannot resolve host of {where}"
    return f"cannot connect to {where}: {sanitize_excerpt(text, 120)}"
