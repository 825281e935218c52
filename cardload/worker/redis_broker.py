"""Publishing many task messages straight into a Redis broker's queue lists.

kombu's publish path costs about as much per message as everything else a producer
does for a job (retry wrapper, option merging, routing, one command per message); a
batch of a thousand messages for one queue needs none of it per message. Here each
message is Celery's own (``step_message``) in the envelope kombu's Redis transport
writes, built by the channel's own functions (priority list, body encoding, delivery
tag), and a batch goes out as one ``LPUSH`` per priority list: the order a worker
takes them in is the order of kombu's one-by-one pushes.

Only where nothing else would see a difference: the Redis transport, no compression,
a queue without expiry, no receivers of Celery's publish signals, and kombu's publish
methods as kombu wrote them (tracers such as Sentry's and ddtrace wrap them to add
their spans and headers per message). Otherwise :func:`direct_lists` says no and the
caller publishes through kombu.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from types import FunctionType
from typing import Any

from celery import Celery, signals
from kombu import serialization
from kombu.exceptions import BatchPublishError
from kombu.messaging import Producer
from kombu.utils import json
from redis import RedisError

from cardload.jobs.routing import STEP_PRIORITY, TASK_NAMES, Step
from cardload.tasks.messages import sent_fields, step_message

_PUBLISH_SIGNALS = (signals.before_task_publish, signals.after_task_publish, signals.task_sent)
_DELIVERY_MODES = {"transient": 1, "persistent": 2}


class RedisLists:
    """One queue's lists on a Redis broker, written a batch at a time."""

    def __init__(self, app: Celery, channel: Any, queue: str) -> None:
        self.app = app
        self.channel = channel
        self.queue = queue
        self.serializer = app.conf.task_serializer
        mode = app.amqp.queues[queue].exchange.delivery_mode or app.conf.task_default_delivery_mode
        self.delivery_mode = _DELIVERY_MODES.get(mode, mode)

    def publish(self, items: Sequence[tuple[Step, str, str]]) -> list[dict[str, Any]]:
        """Push a message for each ``(step, job_id, label)``; returns their ``task-sent``
        fields, in order.

        :raises BatchPublishError: the push failed; some of the messages may be queued
            (kombu's error for an uncertain batch, so callers handle one kind)."""
        by_list: dict[str, list[str]] = defaultdict(list)
        fields = []
        for step, job_id, label in items:
            key, payload, sent = self._prepared(step, job_id, label=label)
            by_list[key].append(payload)
            fields.append(sent)
        try:
            with self.channel.conn_or_acquire() as client:
                pipe = client.pipeline(transaction=False)
                for key, payloads in by_list.items():
                    pipe.lpush(key, *payloads)
                pipe.execute()
        except RedisError as exc:
            raise BatchPublishError("Redis publish batch failed; delivery is uncertain") from exc
        return fields

    def prepare(
        self, step: Step, job_id: str, *, parent: Any = None
    ) -> tuple[str, str, dict[str, Any]] | None:
        """One step's message for a script to push (``StepPusher``); None once a
        receiver of the publish signals is connected or a tracer wraps kombu's publish
        (they must see the publish)."""
        if any(signal.receivers for signal in _PUBLISH_SIGNALS) or not _kombu_publishes():
            return None  # a tracer may have wrapped kombu's publish since the worker started
        return self._prepared(step, job_id, parent=parent)

    def _prepared(
        self, step: Step, job_id: str, *, label: str = "", parent: Any = None
    ) -> tuple[str, str, dict[str, Any]]:
        message = step_message(self.app, step, job_id, label=label, parent=parent)
        key, payload = self._envelope(message, TASK_NAMES[step], STEP_PRIORITY[step])
        return key, payload, sent_fields(message, self.queue)

    def _envelope(self, message: Any, name: str, priority: int) -> tuple[str, str]:
        """The list and the JSON kombu's Redis transport would push for ``message``."""
        channel = self.channel
        serialize: Any = serialization.dumps  # untyped in kombu
        content_type, content_encoding, body = serialize(message.body, serializer=self.serializer)
        properties = dict(message.properties, delivery_mode=self.delivery_mode)
        envelope = channel.prepare_message(
            body, priority, content_type, content_encoding, message.headers, properties
        )
        channel._inplace_augment_message(envelope, "", self.queue)
        pri = channel._get_message_priority(envelope, reverse=False)
        to_json: Any = json.dumps  # untyped in kombu
        return channel._q_for_pri(self.queue, pri), to_json(envelope)


def _kombu_own(method: Any) -> bool:
    """Whether ``method`` is kombu's own function, not a tracer's wrapper of it."""
    return (
        isinstance(method, FunctionType)
        and not hasattr(method, "__wrapped__")
        and method.__module__ == Producer.__module__
    )


def _kombu_publishes() -> bool:
    return _kombu_own(Producer.publish) and _kombu_own(Producer._publish)


def direct_lists(app: Celery, producer: Any, queue: str) -> RedisLists | None:
    """The queue's lists if its messages can be pushed straight in, else None."""
    channel = producer.channel
    if (
        producer.connection.transport.driver_type != "redis"
        or not _kombu_publishes()
        or app.conf.task_compression
        or queue in getattr(channel, "_expires", {})
        or any(signal.receivers for signal in _PUBLISH_SIGNALS)
        or not all(
            hasattr(channel, name)
            for name in ("_inplace_augment_message", "_get_message_priority", "_q_for_pri")
        )
    ):
        return None
    return RedisLists(app, channel, queue)


def step_pusher(app: Celery) -> RedisLists | None:
    """The default queue's lists, for the scripts of the job store to push a job's next
    step into: only where the broker is the job store's Redis (no broker URL of its own)
    and its messages can be pushed straight in (``direct_lists``), without a key prefix."""
    settings = getattr(app, "cardload_settings", None)
    if settings is None or settings.broker_url is not None:
        return None
    with app.producer_or_acquire() as producer:
        lists = direct_lists(app, producer, app.conf.task_default_queue)
        channel: Any = producer.channel
        prefix: str = getattr(channel, "global_keyprefix", "") or ""
        if lists is None or prefix:
            return None
    return lists
