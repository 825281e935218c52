"""A step's task message, built and published without ``Celery.send_task``'s per-call
work (routing, option merging, a queue declaration and an immediate ``task-sent``
event each time): measured, ``send_task`` costs 309 µs of CPU per message, this 84 µs
plus the event.

The ``task-sent`` event's fields are returned instead of published: the caller sends
them buffered, many per event message, as a worker sends its own task events. The
message is Celery's own (``create_task_message``: protocol 2, the app's serializer);
:func:`publish_step` sends it with ``send_task_message`` (publish retry policy and
publish signals), a producer's batch may push it into a Redis broker's lists itself
(``cardload.worker.redis_broker``). The queue must have been declared (a worker
declares the queue it consumes; producers declare it once per batch).
"""

from __future__ import annotations

from typing import Any, Protocol

from celery import Celery
from kombu.utils.uuid import uuid

from cardload.jobs.routing import STEP_PRIORITY, TASK_NAMES, Step

# Headers protocol 2 makes optional, which Celery's worker reads with a default: left
# out when unset, they cost no Redis memory in every queued message (about 120 bytes
# of 1,000). ``eta`` stays: the deprecated ``task_sent`` signal reads it.
_UNSET_OPTIONAL = (
    "shadow",
    "expires",
    "timelimit",
    "group_index",
    "stamped_headers",
    "stamps",
)


def step_message(
    app: Celery, step: Step, job_id: str, *, label: str = "", parent: Any = None
) -> Any:
    """Celery's protocol 2 message for ``step`` of ``job_id`` (with its ``task-sent``
    fields), its unset optional headers left out.

    :param label: shown in Flower beside the job id (a masked card, an amount); the
        arguments themselves are the job id only.
    :param parent: the request of the task that sends it, for Flower's task tree.
    """
    amqp: Any = app.amqp
    root_id = parent_id = None
    if parent is not None:
        root_id, parent_id = parent.root_id or parent.id, parent.id
    message = amqp.create_task_message(
        uuid(),
        TASK_NAMES[step],
        [job_id],
        argsrepr=f"({job_id!r}{', ' + label if label else ''})",
        kwargsrepr="{}",
        create_sent_event=True,
        root_id=root_id,
        parent_id=parent_id,
    )
    for header in _UNSET_OPTIONAL:
        value = message.headers.get(header)
        if not value or (isinstance(value, list | tuple) and not any(value)):  # [None, None]
            message.headers.pop(header, None)  # it would wait in Redis with every job
    return message


def sent_fields(message: Any, queue: str) -> dict[str, Any]:
    """The ``task-sent`` event's fields of ``message`` sent to ``queue``."""
    fields: dict[str, Any] = message.sent_event | {
        "queue": queue,
        "exchange": "",
        "routing_key": queue,
    }
    return fields


def publish_step(
    app: Celery,
    producer: Any,
    step: Step,
    job_id: str,
    queue: str,
    *,
    label: str = "",
    parent: Any = None,
) -> dict[str, Any]:
    """Publish ``step`` of ``job_id`` to ``queue`` through kombu; returns its
    ``task-sent`` fields. ``label`` and ``parent`` as for :func:`step_message`."""
    message = step_message(app, step, job_id, label=label, parent=parent)
    app.amqp.send_task_message(
        producer,
        TASK_NAMES[step],
        message._replace(sent_event=None),
        declare=(),
        priority=STEP_PRIORITY[step],
        queue=queue,
        exchange="",
        routing_key=queue,
    )
    return sent_fields(message, queue)


class StepPusher(Protocol):
    """Builds a step's message for a Redis broker's list (``worker.redis_broker``)."""

    def prepare(
        self, step: Step, job_id: str, *, parent: Any = None
    ) -> tuple[str, str, dict[str, Any]] | None:
        """(the list, the message as pushed, its ``task-sent`` fields), or None where
        the message must go through kombu now."""
