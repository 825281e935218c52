"""SIGTERM to a worker in the middle of a batch (as systemd, Compose and Kubernetes stop
it): the steps under way finish, the messages it held and had not run go back to the
queue, the process exits cleanly; another worker then loads every other card. None
lost, none loaded twice."""

from __future__ import annotations

import json

from cardload.jobs import CardLoadJob, JobStatus
from cardload.sandbox import SEED_CARD
from tests.services import wait_for
from tests.support import queued
from tests.worker.conftest import Stack


def test_sigterm_mid_batch_loses_no_job_and_loads_none_twice(stack: Stack) -> None:
    # Starts take a while: when the worker is told to stop, some are under way.
    stack.faults({"kind": "slow", "endpoint": "start", "delay_ms": 400})
    first = stack.start_worker()
    jobs = [
        CardLoadJob(idempotency_key=f"term-{i}", card_number=SEED_CARD, amount_cents=100 + i)
        for i in range(60)
    ]
    ids = [stack.producer.enqueue(job) for job in jobs]
    wait_for(lambda: len(stack.ledger()) >= 5, 60, "the first loads")
    first.stop()  # SIGTERM; waits for the process to exit
    assert first.proc.returncode == 0, first.log()[-3000:]
    records = stack.store.load_many(ids, history=False)
    unfinished = [r for r in records if r is not None and not r.status.terminal]
    assert unfinished, "the batch ended before the stop: nothing was tested"
    # Every job it did not finish is back in the queue (not only after the visibility
    # timeout): none held by the stopped worker.
    waiting = {json.loads(m)["headers"]["argsrepr"] for m in queued(stack.redis)}
    for record in unfinished:
        assert any(record.job.job_id in shown for shown in waiting), record.job.job_id

    stack.faults()
    stack.start_worker()
    finished = [stack.finished(job_id, timeout_s=90) for job_id in ids]
    assert all(r.status is JobStatus.SUCCEEDED for r in finished)
    ledger = stack.ledger()
    assert sorted(e["amount_cents"] for e in ledger) == [100 + i for i in range(60)]
