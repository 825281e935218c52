"""Sending job steps to the workers, many messages per Redis round trip."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from celery import Celery

from cardload.jobs.routing import TASK_NAMES, Step

BATCH_SIZE = 1000


@dataclass(frozen=True)
class Dispatch:
    step: Step
    job_id: str
    label: str = ""  # shown in Flower instead of the raw arguments (masked card, amount)


def send_steps(app: Celery, items: Sequence[Dispatch], queue: str) -> None:
    """Publish the messages to ``queue`` through one producer; kombu's publish batch
    pipelines them into Redis (one round trip per ``BATCH_SIZE`` messages instead of one
    each). The queue is named, not left to the app: a host's app has another default."""
    with app.producer_or_acquire() as producer, producer.batch(max_size=BATCH_SIZE):
        for item in items:
            app.send_task(
                TASK_NAMES[item.step],
                args=[item.job_id],
                argsrepr=f"({item.job_id!r}{', ' + item.label if item.label else ''})",
                producer=producer,
                queue=queue,
            )
