"""The Redis transport with one client per channel and acknowledgements that ride
along: used for redis:// brokers only, one client per channel and pool, messages go
through it both ways, and every acknowledgement reaches Redis (with the next delivery,
within a moment, or when the channel closes)."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from typing import Any, cast

import pytest
import redis
from kombu.connection import Connection
from kombu.entity import Queue

from cardload.cli.localstack import wait_for
from cardload.worker import transport
from cardload.worker.settings import celery_config
from cardload.worker.transport import TRANSPORT, Channel
from tests.support import make_settings


@pytest.mark.parametrize(
    ("broker", "named"),
    [
        ("redis://127.0.0.1:6379/0", True),
        ("rediss://127.0.0.1:6380/0?ssl_cert_reqs=required", False),
        ("amqp://guest:guest@127.0.0.1:5672//", False),
    ],
)
def test_only_a_plain_redis_broker_uses_it(broker: str, named: bool) -> None:
    settings = make_settings("redis://127.0.0.1:6379/0", "http://sandbox.test")
    settings = settings.model_copy(update={"broker_url": broker})
    config = celery_config(settings)
    assert config["broker_url"] == broker
    assert (config.get("broker_transport") == TRANSPORT) is named


def _connect(url: str, **options: Any) -> Any:
    connect: Any = Connection  # kombu is untyped
    return connect(url, transport=TRANSPORT, transport_options=options)


def test_one_client_per_channel_and_pool(redis_url: str, real_redis: redis.Redis) -> None:
    with _connect(redis_url) as conn:
        channel: Any = conn.default_channel
        assert isinstance(conn.default_channel, Channel)
        seen: list[Any] = []
        # kombu makes the pool lazily and unguarded: two threads making the first one at
        # once get two pools (kombu's race, not the one under test).
        assert channel.pool is not None
        threads = [
            threading.Thread(target=lambda: seen.append(channel._create_client())) for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        first = channel._create_client()
        assert channel._create_client() is first
        assert all(c.connection_pool is channel.pool for c in seen)
        channel._disconnect_pools()  # what kombu does after a connection error
        again = channel._create_client()
        assert again is not first and again.connection_pool is channel.pool


def test_messages_go_through_it_both_ways(redis_url: str, real_redis: redis.Redis) -> None:
    queue: Any = cast(Any, Queue)("cardload-test-transport")
    with _connect(redis_url) as conn:
        with conn.Producer() as producer:
            for i in range(50):
                producer.publish({"n": i}, routing_key=queue.name, declare=[queue])
        got: list[int] = []
        with conn.SimpleQueue(queue.name) as simple:
            for _ in range(50):
                message = simple.get(timeout=5)
                got.append(message.payload["n"])
                message.ack()
    assert got == list(range(50))
    assert real_redis.llen(queue.name) == 0
    assert real_redis.hlen("unacked") == 0


def _publish(conn: Any, queue: Any, count: int) -> None:
    with conn.Producer() as producer:
        for i in range(count):
            producer.publish({"n": i}, routing_key=queue.name, declare=[queue])


def test_an_ack_rides_with_the_next_delivery(
    redis_url: str, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "ACK_FLUSH_S", 3600.0)  # no flush by time in this test
    queue: Any = cast(Any, Queue)("cardload-test-acks")
    with _connect(redis_url) as conn:
        _publish(conn, queue, 3)
        with conn.SimpleQueue(queue.name) as simple:
            first = simple.get(timeout=5)
            assert real_redis.hlen("unacked") == 1  # noted on delivery, as kombu does
            first.ack()
            assert real_redis.hlen("unacked") == 1  # the note stays until ...
            second = simple.get(timeout=5)
            # ... the next delivery's round trip drops it and notes the new one.
            assert real_redis.hkeys("unacked") == [second.delivery_tag.encode()]
            assert real_redis.zcard("unacked_index") == 1
            second.ack()
            third = simple.get(timeout=5)
            third.ack()
        assert real_redis.hlen("unacked") == 1
    # Closing the channel drops what is still due (nothing is delivered again).
    assert real_redis.hlen("unacked") == 0
    assert real_redis.zcard("unacked_index") == 0
    assert real_redis.llen(queue.name) == 0


def test_acks_no_delivery_takes_along_are_flushed_within_a_moment(
    redis_url: str, real_redis: redis.Redis
) -> None:
    queue: Any = cast(Any, Queue)("cardload-test-acks-idle")
    with _connect(redis_url) as conn:
        _publish(conn, queue, 5)
        with conn.SimpleQueue(queue.name) as simple:
            for _ in range(5):
                simple.get(timeout=5).ack()
            wait_for(lambda: real_redis.hlen("unacked") == 0, 5, "the flush")
            assert real_redis.zcard("unacked_index") == 0


def test_a_worker_killed_with_acks_due_gets_them_delivered_again(
    redis_url: str, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledged, not yet flushed, then the process dies: the note of a finished
    message stays and it is delivered again after the visibility timeout, as kombu
    delivers any message whose acknowledgement did not arrive. The job's record makes
    the second delivery a no-op (tests/worker/test_redelivery.py, test_chaos.py)."""
    monkeypatch.setattr(transport, "ACK_FLUSH_S", 3600.0)
    queue: Any = cast(Any, Queue)("cardload-test-acks-lost")
    conn = _connect(redis_url, visibility_timeout=1)
    _publish(conn, queue, 1)
    simple = conn.SimpleQueue(queue.name)
    message = simple.get(timeout=5)
    message.ack()
    # "Killed": nothing of this connection runs again (no close, no flush).
    assert real_redis.hlen("unacked") == 1
    time.sleep(1.2)
    with _connect(redis_url, visibility_timeout=1) as other:
        channel: Any = other.default_channel
        channel.qos.restore_visible(interval=1)
        with other.SimpleQueue(queue.name) as again:
            redelivered = again.get(timeout=5)
            assert redelivered.payload == {"n": 0}
            redelivered.ack()
    message.channel.qos._take_acks()  # the "killed" one's: gone with it
    conn.close()


def test_a_channel_closed_after_its_connection_went_leaves_its_messages_to_come_back(
    redis_url: str, real_redis: redis.Redis
) -> None:
    """After a connection error (a Redis restart) Celery closes the connection, and the
    channel's close restores its unacknowledged messages: with the connection already
    gone no client can be made (kombu raised AttributeError, which stopped the worker).
    The close ends quietly; the notes stay, for the visibility timeout to bring back."""
    queue: Any = cast(Any, Queue)("cardload-test-closed-after-error")
    conn = _connect(redis_url, visibility_timeout=1)
    _publish(conn, queue, 2)
    simple = conn.SimpleQueue(queue.name)
    delivered = simple.get(timeout=5)  # reserved, not acknowledged
    channel: Any = delivered.channel
    channel._disconnect_pools()  # as kombu's close does, first
    channel.connection.client = None  # the connection released meanwhile
    channel.close()  # raised AttributeError("'NoneType' object has no attribute 'hostname'")
    assert real_redis.hkeys("unacked") == [delivered.delivery_tag.encode()]
    time.sleep(1.2)
    with _connect(redis_url, visibility_timeout=1) as other:
        other.default_channel.qos.restore_visible(interval=1)
        with other.SimpleQueue(queue.name) as again:
            got = sorted(again.get(timeout=5).payload["n"] for _ in range(2))
    assert got == [0, 1]


def test_a_channel_that_cannot_flush_holds_up_no_other() -> None:
    """A channel whose Redis is gone fails its flush every time; the others' acks
    must still reach theirs."""
    flusher = transport._AckFlusher()

    class Broken:
        def flush_acks(self, waited_s: float) -> None:
            raise redis.ConnectionError("connection refused")

    class Fine:
        def __init__(self) -> None:
            self.flushed = threading.Event()

        def flush_acks(self, waited_s: float) -> None:
            self.flushed.set()

    broken = [Broken() for _ in range(5)]  # most likely one of them is tried first
    fine = Fine()
    for qos in [*broken, fine]:
        flusher.watch(cast(Any, qos))
    assert fine.flushed.wait(5)


def test_a_dropped_channel_is_not_kept_alive_by_the_flusher() -> None:
    flusher = transport._AckFlusher()

    flushes: list[float] = []

    class Idle:
        def flush_acks(self, waited_s: float) -> None:
            flushes.append(waited_s)

    idle = Idle()
    flusher.watch(cast(Any, idle))
    wait_for(lambda: len(flushes) > 1, 5, "a flush round")
    gone = weakref.ref(idle)
    del idle
    wait_for(lambda: gc.collect() >= 0 and gone() is None, 5, "the dropped channel to be freed")
