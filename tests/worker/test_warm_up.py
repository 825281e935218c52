"""A worker takes its token and loads the job store's scripts before its first job."""

from __future__ import annotations

from cardload.jobs import CardLoadJob, JobStatus
from cardload.sandbox import SEED_CARD
from tests.services import wait_for
from tests.worker.conftest import Stack


def test_a_worker_is_ready_for_its_first_job_before_it_comes(stack: Stack) -> None:
    stack.redis.script_flush()
    stack.start_worker()  # returns once the worker answers: after its warm-up
    assert stack.sandbox.requests["token"] == 1
    shas = [script.sha for script in stack.store._scripts]
    assert all(stack.redis.script_exists(*shas))
    job = CardLoadJob(idempotency_key="warm-1", card_number=SEED_CARD, amount_cents=100)
    assert stack.finished(stack.producer.enqueue(job)).status is JobStatus.SUCCEEDED
    assert stack.sandbox.requests["token"] == 1  # the first job used the token taken


def test_a_worker_whose_api_is_away_at_start_still_starts(stack: Stack) -> None:
    stack.faults({"kind": "error_503", "endpoint": "token", "times": 1})
    stack.start_worker()
    job = CardLoadJob(idempotency_key="warm-2", card_number=SEED_CARD, amount_cents=100)
    assert stack.finished(stack.producer.enqueue(job)).status is JobStatus.SUCCEEDED
    wait_for(lambda: stack.sandbox.requests["token"] >= 2, 10, "a second token request")
