"""kombu's Redis transport, with one Redis client per channel instead of one per call,
and acknowledgements that ride along with the next delivery's bookkeeping.

kombu makes a new ``redis.Redis`` for every publish, acknowledgement and event it sends
outside its event loop (``Channel.conn_or_acquire``), and redis-py's constructor builds
its table of response callbacks each time: a sixth of a worker's CPU per card load
(``bench/worker_cost.py``, profiled with py-spy). A client is safe to share between
threads (each command takes a connection from the channel's pool and gives it back), so
one client per channel and pool does the same work. A pool kombu replaces (after a
connection error) gets a client of its own.

kombu keeps each delivered message in an "unacked" hash until it is acknowledged (a
worker that dies leaves it there, to be delivered again after the visibility timeout),
and spends a round trip on each: one to note the delivery, one to drop the note at
the acknowledgement. Here an acknowledgement frees the prefetch slot at once and drops
the note in the round trip of the next delivery's, or within ``ACK_FLUSH_S`` when none
comes. A worker killed in between leaves notes of messages it finished: they are
delivered again after the visibility timeout, and the job's record makes that a no-op,
as for any message Celery delivers twice. The notes of a worker that stops gracefully
are all dropped first.

Used for ``redis://`` brokers only (``worker.settings``); other URLs keep kombu's own
transport.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual as kombu_virtual
from kombu.utils import json as kombu_json

from cardload.observability import get_logger

log = get_logger(__name__)
_virtual_qos: Any = kombu_virtual.QoS  # kombu is untyped
_dumps: Any = kombu_json.dumps

TRANSPORT = f"{__name__}:Transport"


ACK_FLUSH_S = 0.25  # longest an acknowledgement waits for a delivery to ride along with
_FLUSH_TICK_S = ACK_FLUSH_S / 2  # how often the flusher looks
ACK_BATCH = 256  # or for this many to be due


class QoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        init: Any = super().__init__  # kombu is untyped
        init(*args, **kwargs)
        self._acks_due: list[str] = []
        self._due_since = 0.0  # when the first of them was acknowledged
        self._acks_lock = threading.Lock()
        _flusher.watch(self)

    def append(self, message: Any, delivery_tag: str) -> None:
        due = self._take_acks()
        delivery = message.delivery_info
        raw = _dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        try:
            with self.pipe_or_acquire() as pipe:
                if due:
                    pipe.zrem(self.unacked_index_key, *due).hdel(self.unacked_key, *due)
                pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()})
                pipe.hset(self.unacked_key, delivery_tag, raw)
                pipe.execute()
        except BaseException:
            self._give_back(due)
            raise
        _virtual_qos.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        with self._acks_lock:
            if not self._acks_due:
                self._due_since = time.monotonic()
            self._acks_due.append(delivery_tag)
            full = len(self._acks_due) >= ACK_BATCH
        _virtual_qos.ack(self, delivery_tag)  # the prefetch slot is free now
        if full:
            self.flush_acks()

    def flush_acks(self, waited_s: float = 0.0) -> None:
        """Drop the notes of the acknowledged messages (those due ``waited_s`` or more)."""
        if waited_s and time.monotonic() - self._due_since < waited_s:
            return
        due = self._take_acks()
        if not due:
            return
        try:
            with self.pipe_or_acquire() as pipe:
                pipe.zrem(self.unacked_index_key, *due).hdel(self.unacked_key, *due).execute()
        except BaseException:
            self._give_back(due)
            raise

    def restore_unacked_once(self, stderr: Any = None) -> Any:
        # kombu restores only when some message is still unacknowledged: flush anyway.
        self._flush_quietly()
        restore: Any = super().restore_unacked_once  # kombu is untyped
        return restore(stderr)

    def _flush_quietly(self) -> None:
        try:
            self.flush_acks()
        except Exception as exc:  # at shutdown: the messages are delivered again, a no-op
            log.warning("broker.ack_flush_failed", error=str(exc))

    def restore_unacked(self, client: Any = None) -> None:
        transport = self.channel.connection
        if client is None and (transport is None or transport.client is None):
            # A channel closed after its connection was lost (a Redis restart): no client
            # can be made (kombu would raise AttributeError and stop the worker). The
            # notes stay, and their messages come back after the visibility timeout.
            log.warning("broker.restore_left_to_visibility_timeout", messages=len(self._delivered))
            return
        self._flush_quietly()
        restore: Any = super().restore_unacked  # kombu is untyped
        restore(client)

    def _take_acks(self) -> list[str]:
        with self._acks_lock:
            due, self._acks_due = self._acks_due, []
        return due

    def _give_back(self, due: list[str]) -> None:
        if due:
            with self._acks_lock:
                self._acks_due[:0] = due


class _AckFlusher:
    """One daemon thread per process, started with the first QoS (a consuming worker;
    producers never make one), flushing the acknowledgements no delivery took along."""

    def __init__(self) -> None:
        self._watched: weakref.WeakSet[QoS] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def watch(self, qos: QoS) -> None:
        with self._lock:
            self._watched.add(qos)
            if self._thread is None or self._pid != os.getpid():  # none yet, or forked
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="cardload-acks", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        failing: weakref.WeakSet[QoS] = weakref.WeakSet()  # whose last flush failed
        while True:
            time.sleep(_FLUSH_TICK_S)
            self._flush_all(failing)

    def _flush_all(self, failing: weakref.WeakSet[QoS]) -> None:
        # A method of its own: no strong reference to a QoS outlives the round, so a
        # closed channel's QoS is freed (and leaves the watched set).
        with self._lock:
            watched = list(self._watched)
        for qos in watched:  # one channel's broken connection holds up no other's
            try:
                qos.flush_acks(waited_s=ACK_FLUSH_S)
            except Exception as exc:  # kept, and tried again next time; kombu reconnects
                if qos not in failing:
                    log.warning("broker.ack_flush_failed", error=str(exc))
                failing.add(qos)
            else:
                failing.discard(qos)


_flusher = _AckFlusher()


class Channel(kombu_redis.Channel):
    QoS = QoS
    _shared: tuple[Any, Any] | None = None  # (pool, client)

    def close(self) -> None:
        qos = self._qos
        if isinstance(qos, QoS) and not self.closed:
            qos._flush_quietly()  # while the channel's pools are still there
        close: Any = super().close  # kombu is untyped
        close()

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
