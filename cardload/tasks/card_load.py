"""The card-load chain: ``cardload.create`` → ``cardload.start``.

Each task runs one pipeline step and acts on its outcome. A step sends the next one
itself, after its state is saved, instead of relying on a Celery ``chain`` signature:
a chain's remainder can be lost after a retry (celery #6631), while a saved state plus
an explicit send survives redelivery and the stall sweep. A send that fails (the
broker unreachable after kombu's own retries) retries this task, whose next run finds
the state saved and sends again; and if not even the retry can be published, the
message is handed back to the broker rather than acknowledged away. Where the broker
is the job store's Redis, the start's message is pushed by the very script that saves
the create's end (``Handoff``): nothing to send afterwards. The result event needs no
message at all: it is written with the success.

Task arguments are the job id only, so no card number reaches the broker or Flower.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from cardload.jobs.routing import LEGACY_PUBLISH_TASK, STEP_PRIORITY, TASK_NAMES, Step
from cardload.observability import bind_job, get_logger
from cardload.pipeline import Continue, Finished, Outcome, RetryLater
from cardload.tasks.messages import StepPusher, publish_step

log = get_logger(__name__)

# Redis unreachable (job state) or the broker unreachable (sending the next step):
# nothing was decided that is not saved, so run the task again later.
TRANSIENT = (redis.RedisError, OperationalError)
SEND_RETRY_S = 2.0
# The app attribute a worker's consumer sets to (its pid, its buffered task event
# dispatcher, a StepPusher or None).
TASK_EVENTS = "cardload_task_events"


class CardLoadTask(Task):
    """A task whose retries are never acknowledged away."""

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        countdown = kwargs.get("countdown")
        if countdown and 0 < countdown < 1 and self.app.conf.task_default_queue_type == "quorum":
            # On a quorum queue the retry waits in RabbitMQ (native delayed delivery),
            # which counts whole seconds and refuses less than one: kombu raises for
            # int(countdown) == 0, and the retry would never be sent.
            kwargs["countdown"] = 1
        try:
            return super().retry(*args, **kwargs)
        except Reject as exc:
            if exc.requeue:
                raise
            # Celery could not publish the retry (the broker is down) and would drop the
            # message: hand it back instead, so it runs again (at once, or after the
            # visibility timeout if the broker cannot take it back either).
            raise Reject(exc.reason, requeue=True) from exc


_OPTIONS: dict[str, Any] = {
    "shared": False,  # on our app alone: Celery shares a task with every app by default
    "base": CardLoadTask,
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "max_retries": None,  # our own attempt counter in the job record is the limit
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
}


class Handoff:
    """In a worker whose broker is the job store's Redis: the next step's message, built
    here (with this task as its parent) and pushed by the script that ends the step;
    then its ``task-sent`` event, buffered with the worker's own."""

    def __init__(self, pusher: StepPusher, app: Celery, parent: Any) -> None:
        self.pusher = pusher
        self.app = app
        self.parent = parent
        self.sent: dict[str, Any] | None = None

    @classmethod
    def of(cls, task: Task) -> Handoff | None:
        pid, events, pusher = getattr(task.app, TASK_EVENTS, None) or (0, None, None)
        if pusher is None or events is None or pid != os.getpid():
            return None
        return cls(pusher, task.app, task.request)

    def message(self, step: Step, job_id: str) -> tuple[str, str] | None:
        try:
            prepared = self.pusher.prepare(step, job_id, parent=self.parent)
        except Exception as exc:  # never the step's failure: the task sends it instead
            log.warning("step.message_unbuilt", next_step=step, error=str(exc))
            return None
        if prepared is None:
            return None
        key, payload, self.sent = prepared
        return key, payload

    def announce(self) -> None:
        # The dispatcher of now: a consumer that restarted during the step has a new one.
        pid, events, _ = getattr(self.app, TASK_EVENTS, None) or (0, None, None)
        if self.sent is not None and events is not None and pid == os.getpid():
            events.send("task-sent", **self.sent)


def act(task: Task, job_id: str, outcome: Outcome, handoff: Handoff | None = None) -> str:
    """Do what the step asked for: send the next step (unless it went out with the
    step's end), retry later, or nothing."""
    if isinstance(outcome, Continue):
        if outcome.queued and handoff is not None:
            handoff.announce()
            return f"continue: {outcome.step}"
        try:
            send_next(task, outcome.step, job_id)
        except TRANSIENT as exc:
            log.warning("step.send_failed", next_step=outcome.step, error=str(exc))
            raise task.retry(countdown=SEND_RETRY_S, max_retries=None, exc=exc) from exc
        return f"continue: {outcome.step}"
    if isinstance(outcome, RetryLater):
        raise task.retry(countdown=outcome.delay_s, max_retries=None)
    assert isinstance(outcome, Finished)
    return outcome.reason


def send_next(task: Task, step: Step, job_id: str) -> None:
    """Send the job's next step. In a worker, its ``task-sent`` event joins the worker's
    own buffered task events (the consumer hands its event dispatcher over as the app
    attribute named ``TASK_EVENTS``); elsewhere Celery sends message and event itself."""
    app = task.app
    pid, events, _ = getattr(app, TASK_EVENTS, None) or (0, None, None)
    if events is None or pid != os.getpid():  # no worker consumer in this process
        options = {"argsrepr": repr((job_id,)), "priority": STEP_PRIORITY[step]}
        app.send_task(TASK_NAMES[step], args=[job_id], **options)
        return
    with app.producer_or_acquire() as producer:
        queue = app.conf.task_default_queue
        fields = publish_step(app, producer, step, job_id, queue, parent=task.request)
    events.send("task-sent", **fields)


def register_tasks(app: Celery) -> None:
    """Define the tasks on ``app`` alone (never ``shared_task``: those would join every
    Celery app of the host process too)."""

    @app.task(name=TASK_NAMES["create"], **_OPTIONS)
    def create(self: Task, job_id: str) -> str:
        """Create the Smart Transaction (or find the one an earlier attempt created)."""
        bind_job(job_id, step="create")
        handoff = Handoff.of(self)
        outcome = self.app.pipeline().create(job_id, handoff.message if handoff else None)
        return act(self, job_id, outcome, handoff)

    @app.task(name=TASK_NAMES["start"], **_OPTIONS)
    def start(self: Task, job_id: str) -> str:
        """Start the transaction, which loads the card; read it first after any doubt."""
        bind_job(job_id, step="start")
        return act(self, job_id, self.app.pipeline().start(job_id))

    @app.task(name=LEGACY_PUBLISH_TASK, **_OPTIONS)
    def publish(self: Task, job_id: str) -> str:
        """cardload 0.1's event step, for its messages still queued: the event, if missing."""
        bind_job(job_id, step="publish")
        return act(self, job_id, self.app.pipeline().publish(job_id))
