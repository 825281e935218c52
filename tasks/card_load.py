"""The card-load chain: ``cardload.create`` → ``cardload.start`` → ``cardload.publish``.

Each task reads the job, runs one pipeline step and acts on the outcome. A step
sends the next one itself, after its state is saved, instead of relying on a Celery
``chain`` signature: a chain's remainder can be lost after a retry (celery #6631),
while a saved state plus an explicit send survives redelivery and the stall sweep.
Task arguments are the job id only, so no card number reaches the broker or Flower.
"""

from __future__ import annotations

from typing import Any

import redis
from celery import Task, shared_task

from jobs.routing import TASK_NAMES
from observability import bind_job
from pipeline import Continue, Finished, Outcome, RetryLater
from pipeline.runtime import current

_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "max_retries": None,  # our own attempt counter in the job record is the limit
    # Redis itself unreachable: the job state cannot be read, so try again later.
    "autoretry_for": (redis.RedisError,),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
}


def _act(task: Task, job_id: str, outcome: Outcome) -> str:
    if isinstance(outcome, Continue):
        task.app.send_task(TASK_NAMES[outcome.step], args=[job_id], argsrepr=repr((job_id,)))
        return f"continue: {outcome.step}"
    if isinstance(outcome, RetryLater):
        raise task.retry(countdown=outcome.delay_s, max_retries=None)
    assert isinstance(outcome, Finished)
    return outcome.reason


@shared_task(name=TASK_NAMES["create"], **_OPTIONS)
def create(self: Task, job_id: str) -> str:
    """Create the Smart Transaction (or find the one an earlier attempt created)."""
    bind_job(job_id, step="create")
    return _act(self, job_id, current().create(job_id))


@shared_task(name=TASK_NAMES["start"], **_OPTIONS)
def start(self: Task, job_id: str) -> str:
    """Start the transaction, which loads the card; read it first after any doubt."""
    bind_job(job_id, step="start")
    return _act(self, job_id, current().start(job_id))


@shared_task(name=TASK_NAMES["publish"], **_OPTIONS)
def publish(self: Task, job_id: str) -> str:
    """Append the job's ``card_load.succeeded`` event (once, whatever the deliveries)."""
    bind_job(job_id, step="publish")
    return _act(self, job_id, current().publish(job_id))
