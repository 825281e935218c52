"""The Redis transport with one client per channel: used for redis:// brokers only,
one client per channel and pool, and messages go through it both ways."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest
import redis
from kombu.connection import Connection
from kombu.entity import Queue

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


def _connect(url: str) -> Any:
    connect: Any = Connection  # kombu is untyped
    return connect(url, transport=TRANSPORT)


def test_one_client_per_channel_and_pool(redis_url: str, real_redis: redis.Redis) -> None:
    with _connect(redis_url) as conn:
        channel: Any = conn.default_channel
        assert isinstance(conn.default_channel, Channel)
        seen: list[Any] = []
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
