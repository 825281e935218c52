"""The sandbox over real HTTP/1.1 (asyncio + h11), with keep-alive.

Owning the socket is what lets faults be faithful: ``reset`` sends a TCP RST
(SO_LINGER 0), a lost response holds the connection open and then drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

import h11

from cardload.sandbox.app import Outcome, SandboxApp, SandboxRequest, SandboxResponse

MAX_BODY = 1 << 20
_READ_CHUNK = 65536


class SandboxServer:
    """Serves a :class:`SandboxApp` on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, app: SandboxApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task, writer in list(self._connections.items()):
            writer.transport.abort()
            task.cancel()  # also ends a connection that is waiting out a fault
        await asyncio.gather(*self._connections, return_exceptions=True)

    # --- one connection --------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_BODY)
        try:
            while await self._one_request(conn, reader, writer):
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only close() cancels a connection; ending quietly keeps asyncio's stream
            # callback from logging the cancellation as an error.
            pass
        finally:
            self._connections.pop(task, None)
            if not writer.is_closing():
                writer.close()

    async def _one_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        event = await _next_event(conn, reader)
        if not isinstance(event, h11.Request):
            return False
        body = bytearray()
        while True:
            part = await _next_event(conn, reader)
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > MAX_BODY:
                    raise h11.RemoteProtocolError("body too large")
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                return False
        request = SandboxRequest.build(
            event.method.decode(),
            event.target.decode(),
            {k.decode(): v.decode("latin-1") for k, v in event.headers},
            bytes(body),
        )
        outcome = self.app.handle(request)
        return await _deliver(conn, writer, outcome)


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(_READ_CHUNK))
            continue
        return event


async def _deliver(conn: h11.Connection, writer: asyncio.StreamWriter, outcome: Outcome) -> bool:
    if outcome.wait_s:
        await asyncio.sleep(outcome.wait_s)
    if outcome.response is None:
        if outcome.lose_as == "reset":
            _reset(writer)
        else:
            writer.close()
        return False
    writer.write(_encode(conn, outcome.response))
    await writer.drain()
    return conn.our_state is h11.DONE and conn.their_state is h11.DONE


def _encode(conn: h11.Connection, response: SandboxResponse) -> bytes:
    headers = [
        *response.headers,
        ("content-length", str(len(response.body))),
        ("server", "cardload-sandbox"),
    ]
    out = conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
    out += conn.send(h11.Data(data=response.body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    return out


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN, as a crashed proxy or server does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextlib.contextmanager
def serve_in_thread(
    app: SandboxApp, host: str = "127.0.0.1", port: int = 0
) -> Iterator[SandboxServer]:
    """Run the server on a private event loop in a daemon thread, for tests and the demo."""
    server = SandboxServer(app, host, port)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except OSError as exc:
            failed.append(exc)
            return
        finally:
            ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="sandbox-server", daemon=True)
    thread.start()
    ready.wait()
    if failed:
        thread.join()
        loop.close()
        raise failed[0]
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
