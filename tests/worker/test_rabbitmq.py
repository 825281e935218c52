"""RabbitMQ as the broker (``CARDLOAD_BROKER_URL=amqp://…``), for real: a quorum queue,
publisher confirms, retries with a countdown waiting in the broker (Celery's native
delayed delivery), and a SIGKILLed worker's jobs handed to another worker when its
connection drops. Redis stays the store of job state, tokens and events.

Each test runs in a vhost of its own on the machine's RabbitMQ (``rabbitmq_vhost`` in
conftest.py), so its queues and exchanges go with it. ``test_end_to_end.py`` runs on
both brokers as well."""

from __future__ import annotations

import subprocess
import time

import pytest

from cardload.config.settings import JobSettings, RetrySettings
from cardload.jobs import CardLoadJob, JobStatus
from cardload.sandbox import SEED_CARD
from tests.services import wait_for
from tests.worker.conftest import Stack
from tests.worker.test_chaos import run_chaos


@pytest.fixture
def broker_kind() -> str:
    return "rabbitmq"


@pytest.fixture
def rabbit_stack(stack: Stack) -> Stack:
    return stack


@pytest.fixture
def vhost(broker_url: str) -> str:
    return broker_url.rsplit("/", 1)[1]


def _jobs(prefix: str, count: int) -> list[CardLoadJob]:
    return [
        CardLoadJob(idempotency_key=f"{prefix}-{i}", card_number=SEED_CARD, amount_cents=100 + i)
        for i in range(count)
    ]


def test_a_batch_loads_through_rabbitmq_exactly_once(rabbit_stack: Stack, vhost: str) -> None:
    stack = rabbit_stack
    # Retries with a countdown wait in the broker, not in the worker: 503s (backoff under
    # a second) and a 429 asking for 2 s (native delayed delivery's levels).
    stack.faults(
        {"kind": "error_503", "endpoint": "create", "times": 3},
        {"kind": "rate_limit", "endpoint": "start", "times": 2, "retry_after_s": 2},
    )
    stack.start_worker()
    ids = [stack.producer.enqueue(job) for job in _jobs("amqp", 20)]
    finished = [stack.finished(job_id, timeout_s=90) for job_id in ids]
    assert all(r.status is JobStatus.SUCCEEDED for r in finished)
    assert sum(r.attempts.get("create", 0) for r in finished) == 20 + 3
    assert sorted(e["amount_cents"] for e in stack.ledger()) == [100 + i for i in range(20)]
    assert all(len(stack.published(job_id)) == 1 for job_id in ids)
    # Every retry was sent as a retry (a countdown under a second once failed inside
    # kombu, and the message was only put back).
    assert "Traceback" not in stack.workers[0].log()
    queue = stack.settings.jobs.queue
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "type", "messages"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert any(line.split() == [queue, "quorum", "0"] for line in listed.splitlines())


def test_a_sigkilled_workers_jobs_are_finished_by_another_within_a_minute(
    rabbit_stack: Stack,
) -> None:
    """With default settings (a 30 s lease, retries up to 300 s apart, the visibility
    timeout's hour, which RabbitMQ does not need): the messages the killed worker held
    come back when its connection drops, and the job it was paying for is taken over
    once its lease ends."""
    stack = rabbit_stack
    defaults = stack.settings.model_copy(
        update={"retry": RetrySettings(), "jobs": JobSettings(row_key_secret="test-row-key")}
    )
    # Starts take effect at once and answer 3 s later: the kill lands mid-payment.
    stack.faults({"kind": "slow", "endpoint": "start", "delay_ms": 3000})
    doomed = stack.start_worker(settings=defaults)
    ids = [stack.producer.enqueue(job) for job in _jobs("kill", 10)]
    wait_for(lambda: len(stack.ledger()) >= 1, 60, "a card loaded")
    doomed.kill()
    killed_at = time.monotonic()
    stack.faults()
    stack.start_worker(settings=defaults)
    finished = [stack.finished(job_id, timeout_s=60) for job_id in ids]
    assert time.monotonic() - killed_at < 60
    assert all(r.status is JobStatus.SUCCEEDED for r in finished)
    assert sorted(e["amount_cents"] for e in stack.ledger()) == [100 + i for i in range(10)]


def test_chaos_on_rabbitmq(rabbit_stack: Stack) -> None:
    run_chaos(rabbit_stack, 120, kill_one=False)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_chaos_long_with_a_killed_worker_on_rabbitmq(rabbit_stack: Stack) -> None:
    run_chaos(rabbit_stack, 1000, kill_one=True)
