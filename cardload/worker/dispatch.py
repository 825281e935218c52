"""Sending job steps to the workers, many messages per Redis round trip."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery

from cardload.jobs.routing import Step
from cardload.tasks.messages import publish_step
from cardload.worker.redis_broker import direct_lists

BATCH_SIZE = 1000


def redis_queue_lists(queue: str) -> list[str]:
    """The Redis lists a queue's messages wait in on a Redis broker: kombu keeps one per
    priority step (a job's start waits in the first, its create in a later one)."""
    return [queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9))]


@dataclass(frozen=True)
class Dispatch:
    step: Step
    job_id: str
    label: str = ""  # shown in Flower instead of the raw arguments (masked card, amount)


def send_steps(app: Celery, items: Sequence[Dispatch], queue: str) -> None:
    """Publish the messages to ``queue``, ``BATCH_SIZE`` per Redis round trip, and their
    ``task-sent`` events (Flower's queued tasks) as one ``task.multi`` event per batch,
    as a worker sends its own task events: kombu's publish batch pipelines the messages,
    and Celery's event receivers take a list of events in one message. The queue is
    named, not left to the app (a host's app has another default), and declared once.

    Each event goes out after its batch of messages: Flower never shows a task that was
    not sent. On a Redis broker the messages are pushed straight into the queue's lists
    (``redis_broker``); elsewhere, or where a receiver of Celery's publish signals is
    connected, kombu publishes them."""
    amqp: Any = app.amqp
    sent_events = bool(app.conf.task_send_sent_event)
    with app.producer_or_acquire() as producer:
        producer.maybe_declare(amqp.queues[queue])
        lists = direct_lists(app, producer, queue)
        events = app.events.Dispatcher(
            producer.connection,
            enabled=sent_events,
            buffer_group=["task"],
            buffer_limit=BATCH_SIZE + 1,  # flushed by us, once per batch
        )
        try:
            for start in range(0, len(items), BATCH_SIZE):
                batch = items[start : start + BATCH_SIZE]
                if lists is not None:
                    sent = lists.publish([(i.step, i.job_id, i.label) for i in batch])
                else:
                    sent = _publish(app, producer, batch, queue)
                for fields in sent if sent_events else ():
                    events.send("task-sent", **fields)
                events.flush()
        finally:
            events.close()


def _publish(app: Celery, producer: Any, items: Sequence[Dispatch], queue: str) -> list[Any]:
    """One batch of messages; returns the fields of their ``task-sent`` events."""
    with producer.batch(max_size=BATCH_SIZE):
        return [
            publish_step(app, producer, item.step, item.job_id, queue, label=item.label)
            for item in items
        ]
