"""The HTTP transport the secuconnect client sends through: the standard library's
``http.client`` behind httpx's transport interface, with a keep-alive pool.

Why: httpx's own transport (httpcore and h11, both pure Python) spends about three
times the CPU per request of ``http.client`` (``bench/http_transport.py``), and a
worker makes two or three API calls per card load, hundreds a second. httpx stays the
client's interface: its requests and responses, its proxies from the environment
(mounted beside this transport), its TLS settings, the test transports. Only the bytes
on the wire go another way, and every failure is raised as the httpx error httpx would
raise, so :mod:`secuconnect.classify` decides on it exactly as before: not sent
(connect, pool), or sent with its answer lost (write, read, protocol).
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import httpx

_Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class RequestNotSent(httpx.LocalProtocolError):
    """The request could not be written at all (a header or the URL holds characters
    HTTP does not allow): nothing left this process. Its message never quotes the
    value, which may be a token."""


_MAX_INTERIM = 16  # 1xx answers skipped before the final one; more is a broken server
_MAX_LINE = 65536  # as http.client allows
_MAX_HEADERS = 100  # as http.client allows


class _Response(http.client.HTTPResponse):
    """``http.client`` skips only ``100 Continue``; every other interim answer (``102``,
    ``103 Early Hints``) it would take for the final one, empty, and leave the real
    answer on the connection for the next request to read as its own. Skip them all,
    as h11 does (``101`` is final: the API never switches protocols)."""

    def _read_status(self) -> tuple[str, int, str]:
        read: Any = cast(Any, super())._read_status  # private, stable since Python 3.0
        for _ in range(_MAX_INTERIM):
            version, status, reason = read()
            if not (100 < status < 200 and status != 101):
                return version, status, reason
            self._skip_headers()
        raise http.client.HTTPException("too many interim (1xx) answers")

    def _skip_headers(self) -> None:
        for _ in range(_MAX_HEADERS + 1):
            line = self.fp.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                raise http.client.LineTooLong("interim header line")
            if line in (b"\r\n", b"\n", b""):
                return
        raise http.client.HTTPException("too many headers in an interim answer")


@dataclass(eq=False)
class _Connection:
    http: http.client.HTTPConnection
    idle_since: float = field(default_factory=time.monotonic)

    def still_open(self, now: float, expiry_s: float) -> bool:
        """Not idle too long, and nothing to read: a server that closed an idle
        connection has sent its EOF (or TLS close_notify), which makes it readable."""
        sock = self.http.sock
        if sock is None or now - self.idle_since > expiry_s:
            return False
        try:
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        self.http.close()


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP response as the client reads it: status, headers, the whole body."""

    status: int
    headers: list[tuple[str, str]]
    content: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


class StdlibTransport(httpx.BaseTransport):
    """HTTP/1.1 with keep-alive: at most ``max_connections`` requests at once (a request
    waits up to its ``pool`` timeout for a slot), idle connections kept for
    ``keepalive_expiry_s`` and checked before each reuse. Thread-safe.

    :meth:`exchange` is the lean path the secuconnect client takes (no httpx request or
    response objects: they cost as much CPU as the exchange); :meth:`handle_request`
    serves everything else that goes through ``httpx.Client`` (the token request)."""

    def __init__(
        self,
        *,
        max_connections: int = 50,
        keepalive_expiry_s: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self._max_idle = max_connections
        self._expiry_s = keepalive_expiry_s
        self._ssl_context = ssl_context
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def exchange(
        self,
        method: str,
        origin: _Origin,
        target: str,
        *,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
        timeouts: Mapping[str, float | None],
    ) -> Answer:
        """Send one request (``headers`` with its ``Host``) and read its whole answer.
        Failures are httpx's errors without a request attached."""
        if not self._slots.acquire(timeout=timeouts.get("pool")):
            raise httpx.PoolTimeout("no free connection within the pool timeout")
        try:
            conn = self._checkout(origin, timeouts.get("connect"))
            try:
                answer, reusable = _exchange(
                    conn.http, method, target, headers=headers, body=body, timeouts=timeouts
                )
            except BaseException:
                conn.close()
                raise
            if reusable:
                self._checkin(origin, conn)
            else:
                conn.close()
        finally:
            self._slots.release()
        encoding = answer.header("content-encoding")
        if encoding and encoding.lower() != "identity":
            # Not asked for (the client sends identity): let httpx's decoders undo it.
            decoded = httpx.Response(answer.status, headers=answer.headers, content=answer.content)
            answer = Answer(answer.status, answer.headers, decoded.read())
        return answer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        try:
            answer = self.exchange(
                request.method,
                origin_of(url),
                url.raw_path.decode("ascii"),
                headers=list(request.headers.raw),
                body=request.read() or None,
                timeouts=request.extensions.get("timeout", {}),
            )
        except httpx.RequestError as exc:
            exc.request = request
            raise
        return httpx.Response(
            answer.status, headers=answer.headers, content=answer.content, request=request
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    # --- the pool ----------------------------------------------------------------------

    def _checkout(self, origin: _Origin, connect_timeout: float | None) -> _Connection:
        now = time.monotonic()
        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the transport is closed")
                idle = self._idle.get(origin)
                conn = idle.pop() if idle else None
            if conn is None:
                return self._connect(origin, connect_timeout)
            if conn.still_open(now, self._expiry_s):
                return conn
            conn.close()

    def _checkin(self, origin: _Origin, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if not self._closed and len(idle) < self._max_idle:
                idle.append(conn)
                return
        conn.close()

    def _connect(self, origin: _Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        conn: http.client.HTTPConnection
        if scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context()  # as httpx's own transport
            context = self._ssl_context
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.response_class = _Response
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ConnectTimeout(str(exc) or "connect timed out") from exc
        except OSError as exc:  # refused, unreachable, name not found, TLS refused
            conn.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return _Connection(conn)


def _exchange(
    h: http.client.HTTPConnection,
    method: str,
    target: str,
    *,
    headers: list[tuple[bytes, bytes]],
    body: bytes | None,
    timeouts: Mapping[str, float | None],
) -> tuple[Answer, bool]:
    """One request and its whole response on an open connection; whether the
    connection may be used again."""
    assert h.sock is not None
    try:
        # skip_host: the headers carry Host. Accept-Encoding is the caller's to send.
        h.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            h.putheader(name, value)
    except (ValueError, http.client.HTTPException):
        # Nothing written yet. ValueError's message would quote the value (a token).
        raise RequestNotSent("request not sent: a header or the URL is not valid HTTP") from None
    try:
        h.sock.settimeout(timeouts.get("write"))
        h.endheaders(body)
    except TimeoutError as exc:
        raise httpx.WriteTimeout(str(exc) or "write timed out") from exc
    except http.client.HTTPException as exc:
        raise httpx.LocalProtocolError(str(exc)) from exc
    except OSError as exc:
        raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
    try:
        h.sock.settimeout(timeouts.get("read"))
        response = h.getresponse()
        content = response.read()
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "read timed out") from exc
    except http.client.HTTPException as exc:  # no status line, a cut body, bad framing
        raise httpx.RemoteProtocolError(
            str(exc) or "Server disconnected without sending a response."
        ) from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
    # A final 1xx (101) leaves the connection in another protocol: never reuse it.
    reusable = response.status >= 200 and not response.will_close
    return Answer(response.status, response.getheaders(), content), reusable


def origin_of(url: httpx.URL) -> _Origin:
    """(scheme, host, port) of a URL, the port filled in for its scheme."""
    scheme = url.scheme
    return scheme, url.host, url.port or _DEFAULT_PORTS.get(scheme, 80)
