"""Messages pushed straight into a Redis broker's lists are the ones kombu would push:
same envelope, same list, same order; and where kombu's path is needed it is taken."""

from __future__ import annotations

import functools
import json
from base64 import b64decode
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery import Celery, signals
from kombu.exceptions import BatchPublishError
from kombu.messaging import Producer

from cardload.tasks.messages import publish_step
from cardload.worker import create_app
from cardload.worker.dispatch import Dispatch, redis_queue_lists, send_steps
from cardload.worker.redis_broker import RedisLists, direct_lists, step_pusher
from tests.support import make_settings, queued


def _app(redis_url: str) -> Celery:
    return create_app(make_settings(redis_url, "http://sandbox.test"))


def _normalized(raw: Any) -> dict[str, Any]:
    """The message with what is new in every message (ids, delivery tag) taken out."""
    message: dict[str, Any] = json.loads(raw)
    body = json.loads(b64decode(message.pop("body")))
    headers, properties = message["headers"], message["properties"]
    for name in ("id", "root_id", "origin"):
        headers.pop(name)
    properties.pop("correlation_id")
    properties.pop("delivery_tag")
    return message | {"body": body}


@pytest.mark.parametrize("step", ["create", "start"])
def test_a_pushed_message_is_kombus_message(
    redis_url: str, real_redis: redis.Redis, step: Any
) -> None:
    app = _app(redis_url)
    with app.producer_or_acquire() as producer:
        producer.maybe_declare(app.amqp.queues["cardload"])
        lists = direct_lists(app, producer, "cardload")
        assert isinstance(lists, RedisLists)
        publish_step(app, producer, step, "job-1", "cardload", label="card=927600******4352")
        [fields] = lists.publish([(step, "job-1", "card=927600******4352")])
    names = [n for n in redis_queue_lists("cardload") if real_redis.llen(n)]
    assert len(names) == 1  # both in the one list of the step's priority
    older, newer = (_normalized(m) for m in reversed(real_redis.lrange(names[0], 0, -1)))
    assert older == newer
    assert newer["headers"]["task"] == f"cardload.{step}"
    assert newer["body"][0] == ["job-1"]
    pushed = json.loads(real_redis.lindex(names[0], 0) or b"")
    assert fields["uuid"] == pushed["headers"]["id"] == pushed["properties"]["correlation_id"]
    assert fields["queue"] == "cardload" and fields["name"] == f"cardload.{step}"


def test_a_worker_takes_pushed_messages_in_the_order_sent(
    redis_url: str, real_redis: redis.Redis
) -> None:
    app = _app(redis_url)
    sent = [Dispatch("create", f"job-{i}") for i in range(1500)]  # two batches
    send_steps(app, sent, "cardload")
    send_steps(app, [Dispatch("start", "job-late")], "cardload")
    taken = []
    with app.connection_for_read() as conn, conn.SimpleQueue("cardload") as simple:
        for _ in range(len(sent) + 1):
            message = simple.get(timeout=5)
            taken.append(message.payload[0][0])
            message.ack()
    assert taken == ["job-late"] + [d.job_id for d in sent]  # the start first, as kombu's


def test_a_publish_signal_receiver_gets_kombus_path(
    redis_url: str, real_redis: redis.Redis
) -> None:
    """A host that listens to Celery's publish signals still hears every message."""
    app = _app(redis_url)
    heard: list[str] = []

    def receiver(sender: str, headers: dict[str, Any], **_: Any) -> None:
        heard.append(headers["argsrepr"])

    signals.before_task_publish.connect(receiver, weak=False)
    try:
        with app.producer_or_acquire() as producer:
            assert direct_lists(app, producer, "cardload") is None
        send_steps(app, [Dispatch("create", f"job-{i}") for i in range(3)], "cardload")
    finally:
        signals.before_task_publish.disconnect(receiver)
    assert heard == [f"('job-{i}')" for i in range(3)]
    assert len(queued(real_redis)) == 3


def test_compression_gets_kombus_path(redis_url: str) -> None:
    app = _app(redis_url)
    app.conf.task_compression = "gzip"
    with app.producer_or_acquire() as producer:
        assert direct_lists(app, producer, "cardload") is None


def test_a_failed_push_is_kombus_uncertain_batch(redis_url: str) -> None:
    """Callers handle one error for a batch that may be partly queued."""
    app = _app(redis_url)

    class Pipeline:
        def lpush(self, *args: Any) -> None:
            pass

        def execute(self) -> None:
            raise redis.ConnectionError("connection reset")

    @contextmanager
    def conn_or_acquire() -> Any:
        yield SimpleNamespace(pipeline=lambda transaction: Pipeline())

    with app.producer_or_acquire() as producer:
        lists = direct_lists(app, producer, "cardload")
        assert lists is not None
        lists.channel = SimpleNamespace(
            conn_or_acquire=conn_or_acquire,
            prepare_message=producer.channel.prepare_message,
            _inplace_augment_message=producer.channel._inplace_augment_message,
            _get_message_priority=producer.channel._get_message_priority,
            _q_for_pri=producer.channel._q_for_pri,
        )
        with pytest.raises(BatchPublishError) as caught:
            lists.publish([("create", "job-1", "")])
    assert isinstance(caught.value.__cause__, redis.ConnectionError)


def test_a_tracer_wrapping_kombus_publish_gets_kombus_path(
    redis_url: str, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sentry and ddtrace wrap kombu's publish to add a span and headers per message."""
    app = _app(redis_url)
    traced: list[str] = []
    original: Any = Producer.publish  # kombu is untyped

    @functools.wraps(original)
    def publish(self: Any, body: Any, *args: Any, **kwargs: Any) -> Any:
        traced.append(kwargs.get("headers", {}).get("task", "event"))
        return original(self, body, *args, **kwargs)

    monkeypatch.setattr(Producer, "publish", publish)
    with app.producer_or_acquire() as producer:
        assert direct_lists(app, producer, "cardload") is None
    send_steps(app, [Dispatch("create", f"job-{i}") for i in range(3)], "cardload")
    assert traced.count("cardload.create") == 3
    assert len(queued(real_redis)) == 3


def test_a_step_pushed_by_the_job_store_is_kombus_message(
    redis_url: str, real_redis: redis.Redis
) -> None:
    """The start pushed with the create's end (a script of the job store) is the message
    kombu would publish, with the create as its parent, on the queue's own list."""
    app = _app(redis_url)
    pusher = step_pusher(app)
    assert isinstance(pusher, RedisLists)
    parent = SimpleNamespace(id="create-task-1", root_id=None)
    prepared = pusher.prepare("start", "job-1", parent=parent)
    assert prepared is not None
    key, payload, fields = prepared
    with app.producer_or_acquire() as producer:
        publish_step(app, producer, "start", "job-1", "cardload", parent=parent)
    [kombus] = [n for n in redis_queue_lists("cardload") if real_redis.llen(n)]
    assert key == kombus
    assert _normalized(payload) == _normalized(real_redis.lindex(kombus, 0) or b"")
    pushed = json.loads(payload)
    assert pushed["headers"]["parent_id"] == "create-task-1" == fields["parent_id"]
    assert fields["uuid"] == pushed["headers"]["id"] and fields["queue"] == "cardload"


def test_no_step_is_pushed_by_the_job_store_past_kombu_when_it_must_not_be(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker of its own (another Redis, RabbitMQ, even the same URL said twice), a
    key prefix, or a receiver of the publish signals: the task publishes through kombu."""
    settings = make_settings(redis_url, "http://sandbox.test")
    assert step_pusher(create_app(settings.model_copy(update={"broker_url": redis_url}))) is None
    prefixed = create_app(settings)
    prefixed.conf.broker_transport_options = {"global_keyprefix": "other:"}
    assert step_pusher(prefixed) is None
    pusher = step_pusher(_app(redis_url))
    assert pusher is not None

    def receiver(**_: Any) -> None:
        pass

    signals.after_task_publish.connect(receiver, weak=False)
    try:
        assert pusher.prepare("start", "job-1") is None
    finally:
        signals.after_task_publish.disconnect(receiver)
    assert pusher.prepare("start", "job-1") is not None
    # A tracer that wraps kombu's publish after the worker started (sentry_sdk.init late).
    original: Any = Producer.publish  # kombu is untyped

    @functools.wraps(original)
    def publish(self: Any, body: Any, *args: Any, **kwargs: Any) -> Any:
        return original(self, body, *args, **kwargs)

    monkeypatch.setattr(Producer, "publish", publish)
    assert pusher.prepare("start", "job-1") is None
