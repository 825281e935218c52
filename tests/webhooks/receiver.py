"""A webhook receiver as a customer would write one: it checks every delivery's
signature, drops an event id it has processed, and can be told to fail or dawdle."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cardload.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, WebhookSignatureError, verify


@dataclass
class Receiver:
    secret: str = ""
    fail_first: int = 0  # answer 500 to each event's first n deliveries
    delay_s: float = 0.0  # before answering
    status: int = 200
    deliveries: Counter[str] = field(default_factory=Counter)  # every signed POST, by event
    acknowledged: Counter[str] = field(default_factory=Counter)  # answered 2xx, by event
    processed: list[str] = field(default_factory=list)  # event ids, each once (the dedupe)
    bad_signatures: int = 0
    bodies: dict[str, bytes] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)  # being answered now
    hosts: set[str] = field(default_factory=set)  # Host headers seen
    first_ack_at: dict[str, float] = field(default_factory=dict)  # monotonic
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, body: bytes, headers: Any) -> int:
        event_id = headers.get(EVENT_ID_HEADER, "")
        try:
            verify(body, headers.get(SIGNATURE_HEADER, ""), self.secret)
        except WebhookSignatureError:
            with self.lock:
                self.bad_signatures += 1
            return 400
        with self.lock:
            self.hosts.add(headers.get("Host", ""))
            self.deliveries[event_id] += 1
            if self.deliveries[event_id] <= self.fail_first:
                return 500
            self.in_flight.add(event_id)
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        with self.lock:
            self.in_flight.discard(event_id)
            if event_id not in self.bodies:  # a repeat is acknowledged, not processed again
                self.bodies[event_id] = body
                self.processed.append(event_id)
            if 200 <= self.status < 300:
                self.acknowledged[event_id] += 1
                self.first_ack_at.setdefault(event_id, time.monotonic())
        return self.status


@contextmanager
def receiving(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = receiver.handle(body, self.headers)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/cardload"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
