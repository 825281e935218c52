"""What the pipeline does with each status a payment can end in, and with each start
method: a paid one succeeds, a failed one is dead-lettered at once (not read again
until the attempts run out), an unknown one is waited on."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from pydantic import ValidationError

from cardload.config import SettingsError
from cardload.events import CardLoadFailed, CardLoadSucceeded
from cardload.jobs import CardLoadJob, JobStatus
from cardload.pipeline import Continue, Finished, Pipeline, RetryLater
from cardload.pipeline.runtime import build_pipeline
from cardload.producers import CardLoadProducer, PaymentMethodError
from cardload.sandbox import SEED_CARD, SandboxApp, SandboxTransport
from cardload.secuconnect.statuses import MEANINGS, StatusMeaning, TransactionStatus
from tests.pipeline.test_steps import admit, dead_letter, events, faults, pipeline, run
from tests.support import make_settings

__all__ = ["pipeline"]  # the fixture, shared with test_steps

PAID = sorted(s for s, m in MEANINGS.items() if m is StatusMeaning.PAID)
FAILED = sorted(s for s, m in MEANINGS.items() if m is StatusMeaning.FAILED)
ENDED_UNKNOWN = sorted(s for s, m in MEANINGS.items() if m is StatusMeaning.ENDED_UNKNOWN)


def payment_ends_as(app: SandboxApp, status: str, **rule: Any) -> None:
    """Every start (or ``times`` of them) answers and ends at once in ``status``."""
    fault = {"kind": "processing", "endpoint": "start", "delay_ms": 0, "ends_as": status}
    faults(app, fault | rule)


def test_every_status_a_source_names_has_a_decision() -> None:
    assert set(MEANINGS) == set(TransactionStatus)
    assert {s for s, m in MEANINGS.items() if m is StatusMeaning.RUNNING} == {
        "processing",
        "approved",
        "pending",
    }
    # Taken as paid or failed only where a source describes the status.
    assert set(ENDED_UNKNOWN) == {"aborted", "timeout", "deleted"}


@pytest.mark.parametrize("status", FAILED)
def test_a_failed_payment_is_dead_lettered_at_once(
    app: SandboxApp, pipeline: Pipeline, status: str
) -> None:
    payment_ends_as(app, status)
    job_id = admit(pipeline)
    outcomes = run(pipeline, job_id)
    assert outcomes[-1] == Finished("dead-lettered")
    record = pipeline.store.load(job_id)
    assert record is not None and record.status is JobStatus.DEAD_LETTERED
    assert record.attempts == {"create": 1, "start": 1}  # no second attempt
    assert app.requests["start"] == 1 and app.requests["get"] == 0
    letter = dead_letter(pipeline, job_id)
    assert letter is not None and not letter.load_uncertain  # it says what became of it
    assert letter.error.message == f"transaction {record.transaction_id} is {status}"
    assert app.world.ledger == []
    [event] = events(pipeline)
    assert isinstance(event, CardLoadFailed) and not event.load_uncertain


@pytest.mark.parametrize("status", FAILED)
def test_a_payment_that_fails_after_processing_is_dead_lettered_on_the_read(
    app: SandboxApp, pipeline: Pipeline, status: str
) -> None:
    payment_ends_as(app, status, delay_ms=60_000)
    job_id = admit(pipeline)
    assert pipeline.create(job_id) == Continue("start")
    waiting = pipeline.start(job_id)
    assert isinstance(waiting, RetryLater) and "is processing" in waiting.reason
    [tx] = app.world.transactions.values()
    tx.completes_at = tx.created  # the payment ends now
    assert pipeline.start(job_id) == Finished("dead-lettered")
    assert app.requests["start"] == 1  # read, not started again
    letter = dead_letter(pipeline, job_id)
    assert letter is not None and not letter.load_uncertain
    assert letter.error.message.endswith(f"is {status}") and app.world.ledger == []


def test_a_replay_after_a_failed_payment_pays_with_a_new_transaction(
    app: SandboxApp, pipeline: Pipeline
) -> None:
    """ "failed: you must repeat the payment process": the failed transaction loaded
    nothing and is never started again; the replay's lookup passes it over and the
    job creates and starts a new one, loading the card once."""
    payment_ends_as(app, "failed", times=1)
    job_id = admit(pipeline)
    assert run(pipeline, job_id)[-1] == Finished("dead-lettered")
    failed = pipeline.store.load(job_id)
    assert failed is not None and failed.transaction_id is not None
    assert pipeline.store.reopen(job_id)
    assert run(pipeline, job_id)[-1] == Finished("succeeded")
    record = pipeline.store.load(job_id)
    assert record is not None and record.status is JobStatus.SUCCEEDED
    assert record.transaction_id not in (None, failed.transaction_id)
    assert app.world.transactions[failed.transaction_id].status == "failed"
    assert len(app.world.transactions) == 2 and len(app.world.ledger) == 1
    assert [e.type for e in events(pipeline)] == ["card_load.failed", "card_load.succeeded"]


@pytest.mark.parametrize("status", ENDED_UNKNOWN)
def test_a_payment_that_ended_undescribed_is_dead_lettered_as_possibly_loaded(
    app: SandboxApp, pipeline: Pipeline, status: str
) -> None:
    """aborted, timeout, deleted: the older SDKs name them, no source says whether the
    payment was taken first. At once a dead letter that says the card may be loaded;
    and the same key enqueued again (Redis lost the job) adopts that transaction, never
    making and starting a second one."""
    payment_ends_as(app, status)
    job_id = admit(pipeline)
    assert run(pipeline, job_id)[-1] == Finished("dead-lettered")
    letter = dead_letter(pipeline, job_id)
    assert letter is not None and letter.load_uncertain and letter.error.kind == "uncertain"
    assert letter.attempts == {"create": 1, "start": 1}
    pipeline.store.redis.flushdb()  # the job's record, key and dead letter lost
    again = admit(pipeline)
    assert run(pipeline, again)[-1] == Finished("dead-lettered")
    assert len(app.world.transactions) == 1 and app.requests["start"] == 1
    relettered = dead_letter(pipeline, again)
    assert relettered is not None and relettered.load_uncertain


@pytest.mark.parametrize("status", PAID)
def test_a_paid_payment_succeeds_with_its_balances(
    app: SandboxApp, pipeline: Pipeline, status: str
) -> None:
    payment_ends_as(app, status)
    job_id = admit(pipeline)
    assert run(pipeline, job_id)[-1] == Finished("succeeded")
    [event] = events(pipeline)
    assert isinstance(event, CardLoadSucceeded) and event.balances is not None
    assert event.balances.cash_cents == 2200 and len(app.world.ledger) == 1


def test_the_start_method_comes_from_the_job_else_the_setting(
    app: SandboxApp, real_redis: redis.Redis
) -> None:
    settings = make_settings(
        "redis://unused", "http://sandbox.test", secuconnect={"start_method": "invoice"}
    )
    pipeline = build_pipeline(settings, client=real_redis, transport=SandboxTransport(app))
    try:
        by_setting = admit(pipeline)
        by_job = admit(pipeline, idempotency_key="order-2", payment_method="cashless")
        for job_id in (by_setting, by_job):
            assert run(pipeline, job_id)[-1] == Finished("succeeded")
        methods = {tx.merchant_ref: tx.payment_method for tx in app.world.transactions.values()}
        assert methods == {"order-1": "invoice", "order-2": "cashless"}
    finally:
        pipeline.leases.stop()


@pytest.mark.parametrize("method", ["loyalty", "cashless_direct", "creditcard", ""])
def test_a_method_a_load_cannot_be_paid_with_is_refused_on_admission(method: str) -> None:
    settings = make_settings("redis://unused", "http://sandbox.test")
    producer = CardLoadProducer.from_settings(settings)
    job = CardLoadJob(
        idempotency_key="k", card_number=SEED_CARD, amount_cents=100, payment_method=method
    )
    with pytest.raises(PaymentMethodError, match="payment_method"):
        producer.check(job)  # before anything is written or sent
    with pytest.raises((ValidationError, SettingsError)):
        make_settings("redis://unused", "http://sandbox.test", secuconnect={"start_method": method})


def test_a_record_an_earlier_version_wrote_with_any_method_still_runs(
    app: SandboxApp, pipeline: Pipeline
) -> None:
    """0.2 took any string; such a job is not lost: the API refuses the method, and the
    job is dead-lettered with the API's reason (a start that was refused loaded nothing)."""
    job_id = admit(pipeline, payment_method="paypal")
    assert run(pipeline, job_id)[-1] == Finished("dead-lettered")
    letter = dead_letter(pipeline, job_id)
    assert letter is not None and not letter.load_uncertain
    assert "paypal" in (letter.error.api_error_details or "") and app.world.ledger == []
