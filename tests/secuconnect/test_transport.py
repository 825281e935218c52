"""The stdlib transport over real sockets: keep-alive, a connection the server closed,
and each failure raised as the httpx error the classifier decides on."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from cardload.cli.localstack import wait_for
from cardload.sandbox import SandboxApp, serve_in_thread
from cardload.secuconnect import (
    AmbiguousError,
    CreateSmartTransaction,
    MemoryTokenSource,
    RetryableError,
    SecuconnectClient,
    build_http,
    fetch_token,
)
from cardload.secuconnect.classify import classify_transport_error
from cardload.secuconnect.transport import Answer, RequestNotSent, StdlibTransport, origin_of
from tests.support import CREDENTIALS, load_request

TIMEOUTS = {"connect": 2.0, "read": 0.5, "write": 2.0, "pool": 0.3}


class Script(BaseHTTPRequestHandler):
    """Answers by path: /ok, /chunked, /gzip, /slow, /drop (read, then close without a
    word), /close (answer with Connection: close), /echo (the request as JSON)."""

    protocol_version = "HTTP/1.1"
    connections: list[int] = []  # noqa: RUF012 - the test server's shared tally

    def setup(self) -> None:
        super().setup()
        Script.connections.append(id(self.connection))

    def log_message(self, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        body = self._body()
        path = self.path.split("?")[0]
        if path == "/drop":
            self.close_connection = True
            return
        if path == "/slow":
            time.sleep(1.0)
        if path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b'{"a":', b"1}"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        payload = body if path == "/echo" else b'{"ok":true}'
        if path == "/echo":
            lines = [f"{k}: {v}" for k, v in self.headers.items()]
            payload = ("\n".join([f"{self.command} {self.path}", *lines]).encode() + b"\n\n") + body
        encoded = gzip.compress(payload) if path == "/gzip" else payload
        self.send_response(200)
        self.send_header("Content-Length", str(len(encoded)))
        if path == "/gzip":
            self.send_header("Content-Encoding", "gzip")
        if path == "/close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(encoded)


@contextmanager
def scripted() -> Iterator[str]:
    Script.connections = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Script)
    server.daemon_threads = True
    server.handle_error = lambda *_: None  # type: ignore[method-assign]  # clients that hung up
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def base() -> Iterator[str]:
    with scripted() as url:
        yield url


def _get(
    transport: StdlibTransport, url: str, method: str = "GET", body: bytes | None = None
) -> Answer:
    parsed = httpx.URL(url)
    headers = [(b"Host", parsed.netloc)]
    if body is not None:
        headers.append((b"Content-Length", str(len(body)).encode()))
    return transport.exchange(
        method,
        origin_of(parsed),
        parsed.raw_path.decode(),
        headers=headers,
        body=body,
        timeouts=TIMEOUTS,
    )


def test_keep_alive_reuses_one_connection(base: str) -> None:
    transport = StdlibTransport(max_connections=4)
    answers = [_get(transport, f"{base}/ok") for _ in range(20)]
    assert {a.status for a in answers} == {200}
    assert answers[0].content == b'{"ok":true}'
    assert len(Script.connections) == 1
    transport.close()


def test_a_connection_the_server_closed_is_not_reused(base: str) -> None:
    transport = StdlibTransport()
    assert _get(transport, f"{base}/close").status == 200
    assert _get(transport, f"{base}/ok").status == 200  # on a new connection, no error
    assert len(Script.connections) == 2
    transport.close()


def test_an_idle_connection_closed_by_the_server_is_detected_before_reuse() -> None:
    # A server that closes each connection right after answering, without saying so
    # (as a load balancer does to idle connections): the next request must not fail.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[int] = []
    closed = threading.Event()

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            accepted.append(1)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            conn.close()
            closed.set()

    threading.Thread(target=serve, daemon=True).start()
    transport = StdlibTransport()
    url = f"http://127.0.0.1:{port}/x"
    assert _get(transport, url).content == b"ok"
    assert closed.wait(5)
    time.sleep(0.05)  # for its FIN to cross the loopback
    assert _get(transport, url).content == b"ok"
    assert accepted == [1, 1]
    listener.close()
    transport.close()


def test_chunked_and_gzip_answers_are_read_whole(base: str) -> None:
    transport = StdlibTransport()
    assert _get(transport, f"{base}/chunked").content == b'{"a":1}'
    assert _get(transport, f"{base}/gzip").content == b'{"ok":true}'
    transport.close()


def test_request_line_headers_and_body_arrive_as_sent(base: str) -> None:
    transport = StdlibTransport()
    answer = _get(transport, f"{base}/echo?q=a%20b", method="POST", body=b'{"x":1}')
    head, body = answer.content.split(b"\n\n", 1)
    assert head.splitlines()[0] == b"POST /echo?q=a%20b"
    assert body == b'{"x":1}'
    assert b"Accept-Encoding" not in head  # only what the caller sends
    transport.close()


def test_failures_are_httpx_errors_classified_as_before(base: str) -> None:
    transport = StdlibTransport(max_connections=1)
    with pytest.raises(httpx.ReadTimeout) as timeout:
        _get(transport, f"{base}/slow", method="POST", body=b"{}")
    assert isinstance(classify_transport_error("POST", timeout.value), AmbiguousError)
    with pytest.raises(httpx.RemoteProtocolError) as dropped:
        _get(transport, f"{base}/drop", method="POST", body=b"{}")
    assert isinstance(classify_transport_error("POST", dropped.value), AmbiguousError)
    assert isinstance(classify_transport_error("GET", dropped.value), RetryableError)

    closed_port = socket.create_server(("127.0.0.1", 0))
    port = closed_port.getsockname()[1]
    closed_port.close()
    with pytest.raises(httpx.ConnectError) as refused:
        _get(transport, f"http://127.0.0.1:{port}/ok", method="POST", body=b"{}")
    assert type(classify_transport_error("POST", refused.value)) is RetryableError  # not sent
    transport.close()


def test_a_request_waits_for_a_slot_no_longer_than_the_pool_timeout(base: str) -> None:
    transport = StdlibTransport(max_connections=1)

    def hold() -> None:
        with pytest.raises(httpx.ReadTimeout):
            _get(transport, f"{base}/slow")

    busy = threading.Thread(target=hold, daemon=True)
    busy.start()
    wait_for(lambda: Script.connections, 5, "the one slot to be taken")  # connected: held
    with pytest.raises(httpx.PoolTimeout) as waited:
        _get(transport, f"{base}/ok", method="POST", body=b"{}")
    assert type(classify_transport_error("POST", waited.value)) is RetryableError
    busy.join()
    transport.close()
    with pytest.raises(RuntimeError, match="closed"):
        _get(transport, f"{base}/ok")


def test_the_client_over_real_http_takes_the_stdlib_path() -> None:
    with serve_in_thread(SandboxApp()) as server, build_http(server.url) as http:
        assert isinstance(http._transport_for_url(http.base_url), StdlibTransport)
        client = SecuconnectClient(http, MemoryTokenSource(lambda: fetch_token(http, CREDENTIALS)))
        card = http.post("/_sandbox/cards", json={"count": 1}).json()["cardnumbers"][0]
        request = load_request(card, 700, merchantRef="transport-test")
        created = client.create(CreateSmartTransaction.model_validate(request))
        assert client.start(created.id, "cash").status == "ok"
        assert [tx.id for tx in client.find_by_merchant_ref("transport-test")] == [created.id]


def test_a_proxy_from_the_environment_keeps_httpx_own_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    with build_http("https://connect.secucard.com") as http:
        client = SecuconnectClient(http, MemoryTokenSource(lambda: fetch_token(http, CREDENTIALS)))
        assert isinstance(client._transport, httpx.HTTPTransport)
        assert client._wire is None
    monkeypatch.delenv("HTTPS_PROXY")
    with build_http("https://connect.secucard.com") as http:
        client = SecuconnectClient(http, MemoryTokenSource(lambda: fetch_token(http, CREDENTIALS)))
        assert isinstance(client._wire, StdlibTransport)


def _raw_server(answer: Callable[[bytes, socket.socket], None]) -> tuple[str, socket.socket]:
    """A server that reads each request line and lets ``answer`` write raw bytes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def handle(conn: socket.socket) -> None:
        # Closed when the client goes: a socket left to the garbage collector warns
        # (ResourceWarning) in whichever later test happens to be running then.
        with conn, conn.makefile("rb") as f:
            while line := f.readline():
                length = 0
                while (header := f.readline()) not in (b"\r\n", b""):
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":")[1])
                f.read(length)
                answer(line, conn)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", listener


def test_interim_answers_are_skipped_and_never_taken_for_the_next_request() -> None:
    def answer(line: bytes, conn: socket.socket) -> None:
        if line.startswith(b"POST"):
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n")
            conn.sendall(b"HTTP/1.1 102 Processing\r\n\r\n")
            time.sleep(0.2)  # the final answer comes later
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\npost")
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nget")

    url, listener = _raw_server(answer)
    transport = StdlibTransport(max_connections=1)  # one connection: any desync would show
    posted = _get(transport, f"{url}/tx", method="POST", body=b"{}")
    assert (posted.status, posted.content) == (201, b"post")
    assert [_get(transport, f"{url}/tx/{i}").content for i in range(3)] == [b"get"] * 3
    transport.close()
    listener.close()


def test_a_header_http_cannot_carry_is_not_sent_and_not_quoted(base: str) -> None:
    transport = StdlibTransport()
    parsed = httpx.URL(f"{base}/ok")
    with pytest.raises(RequestNotSent) as refused:
        transport.exchange(
            "POST",
            origin_of(parsed),
            "/ok",
            headers=[(b"Host", parsed.netloc), (b"Authorization", b"Bearer SEKRIT-0123\n")],
            body=None,
            timeouts=TIMEOUTS,
        )
    assert "SEKRIT" not in str(refused.value) and refused.value.__cause__ is None
    assert type(classify_transport_error("POST", refused.value)) is RetryableError  # not sent
    assert _get(transport, f"{base}/ok").status == 200  # the pool is fine afterwards
    transport.close()


def test_an_answer_for_another_transaction_is_never_taken_for_ours() -> None:
    other = "STX_" + "B" * 30

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/token"):
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 600})
        return httpx.Response(
            200, json={"object": "smart.transactions", "id": other, "status": "ok"}
        )

    with build_http("http://x", transport=httpx.MockTransport(handler)) as http:
        client = SecuconnectClient(http, MemoryTokenSource(lambda: fetch_token(http, CREDENTIALS)))
        ours = "STX_" + "A" * 30
        with pytest.raises(RetryableError, match="answered with STX_B"):
            client.get(ours)
        with pytest.raises(AmbiguousError, match="answered with STX_B"):
            client.start(ours, "cash")
