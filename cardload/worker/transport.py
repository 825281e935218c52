"""kombu's Redis transport, with one Redis client per channel instead of one per call.

kombu makes a new ``redis.Redis`` for every publish, acknowledgement and event it sends
outside its event loop (``Channel.conn_or_acquire``), and redis-py's constructor builds
its table of response callbacks each time: a sixth of a worker's CPU per card load
(``bench/worker_cost.py``, profiled with py-spy). A client is safe to share between
threads (each command takes a connection from the channel's pool and gives it back), so
one client per channel and pool does the same work. A pool kombu replaces (after a
connection error) gets a client of its own.

Used for ``redis://`` brokers only (``worker.settings``); other URLs keep kombu's own
transport.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

TRANSPORT = f"{__name__}:Transport"


class Channel(kombu_redis.Channel):
    _shared: tuple[Any, Any] | None = None  # (pool, client)

    def _create_client(self, asynchronous: bool = False) -> Any:
        create: Any = super()._create_client  # kombu is untyped
        if asynchronous:
            return create(asynchronous=True)
        pool = self.pool
        shared = self._shared
        if shared is None or shared[0] is not pool:
            # Two threads may both make one here; the later wins, both work.
            shared = self._shared = (pool, create())
        return shared[1]


class Transport(kombu_redis.Transport):
    Channel = Channel
