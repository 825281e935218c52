"""Redis losing its last writes: a real redis-server, a snapshot (SAVE) taken at some
point of a job's life, the card loaded after it, then the server killed and started
again from that snapshot. Whatever was lost, the card is loaded once and announced once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cardload.deadletters import DeadLetterStore
from cardload.events import EventStream
from cardload.jobs import CardLoadJob, JobStatus, keys
from cardload.jobs.routing import STEP_FOR_STATUS, Step
from cardload.pipeline import Continue, Finished, Outcome, Pipeline, RetryLater
from cardload.pipeline.runtime import build_pipeline
from cardload.sandbox import GIFT_CARD, SEED_CARD, FaultSettings, SandboxApp, SandboxTransport
from tests.services import RedisProcess, wait_for
from tests.support import make_settings


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path / "redis")
    yield process
    process.stop()


def pipeline_on(app: SandboxApp, url: str) -> Pipeline:
    settings = make_settings(url, "http://sandbox.test")
    built = build_pipeline(
        settings,
        client=redis.Redis.from_url(url),
        transport=SandboxTransport(app, sleep=lambda _: None),
    )
    built.uniform = lambda: 0.5
    return built


def drive(pipeline: Pipeline, job_id: str, step: Step = "create", limit: int = 30) -> Outcome:
    outcome: Outcome = Finished("never ran")
    for _ in range(limit):
        outcome = getattr(pipeline, step)(job_id)
        if isinstance(outcome, Continue):
            step = outcome.step
        elif isinstance(outcome, Finished):
            return outcome
    return outcome


def restart(server: RedisProcess, old: Pipeline, app: SandboxApp) -> Pipeline:
    old.leases.stop()
    server.kill()
    server.start()  # from the snapshot: everything written after it is gone
    return pipeline_on(app, server.url)


def events(url: str) -> list[Any]:
    return [e.event for e in EventStream(redis.Redis.from_url(url), "test:events").read()]


def job(key: str = "order-1") -> CardLoadJob:
    return CardLoadJob(idempotency_key=key, card_number=SEED_CARD, amount_cents=2000)


@pytest.mark.parametrize("snapshot_at", ["queued", "creating", "created", "starting", "succeeded"])
def test_a_restore_from_any_point_of_the_job_loads_the_card_once(
    server: RedisProcess, snapshot_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = SandboxApp()
    pipeline = pipeline_on(app, server.url)
    client = pipeline.store.redis
    job_id = pipeline.store.admit(job()).job_id
    for call, inside in (("create", "creating"), ("start", "starting")):
        real = getattr(pipeline.client, call)

        def snapshot_then(*args: Any, _real: Any = real, _inside: str = inside) -> Any:
            if snapshot_at == _inside:
                client.save()  # the step claimed the job and is about to call the API
            return _real(*args)

        monkeypatch.setattr(pipeline.client, call, snapshot_then)
    if snapshot_at == "queued":
        client.save()
    assert pipeline.create(job_id) == Continue("start")
    if snapshot_at == "created":
        client.save()
    assert pipeline.start(job_id) == Finished("succeeded")
    if snapshot_at == "succeeded":
        client.save()
    monkeypatch.undo()

    after = restart(server, pipeline, app)
    record = after.store.load(job_id)
    assert record is not None and record.status.value == snapshot_at
    if not record.status.terminal:
        # A lease restored with the snapshot runs out; then the stall sweep (here: we)
        # sends the job's current step again.
        def lease_over() -> bool:
            until = int(after.store.redis.hget(keys.job(job_id), "lock_until_ms") or 0)
            return after.store.server_time() * 1000 > until

        wait_for(lease_over, 10, "the restored lease to run out")
        assert drive(after, job_id, STEP_FOR_STATUS[record.status]) == Finished("succeeded")
    record = after.store.load(job_id)
    assert record is not None and record.status is JobStatus.SUCCEEDED
    assert len(app.world.transactions) == 1 and len(app.world.ledger) == 1
    assert [e.type for e in events(server.url)] == ["card_load.succeeded"]
    after.leases.stop()


def test_a_restore_that_lost_the_job_and_its_key_loads_the_card_once(
    server: RedisProcess,
) -> None:
    """The snapshot is older than the job: after the restore Redis knows neither the job
    nor its idempotency key, and the producer enqueues the same key again (a batch
    submitted again, an order system retrying). Only the API remembers: the first
    create looks the transaction up by merchantRef and adopts it."""
    app = SandboxApp()
    pipeline = pipeline_on(app, server.url)
    pipeline.store.redis.save()  # nothing of the job yet
    first = pipeline.store.admit(job()).job_id
    assert drive(pipeline, first) == Finished("succeeded")
    after = restart(server, pipeline, app)
    assert after.store.load(first) is None
    again = after.store.admit(job())
    assert again.created  # a new job for Redis, the same load for the API
    assert drive(after, again.job_id) == Finished("succeeded")
    assert len(app.world.transactions) == 1 and len(app.world.ledger) == 1
    record = after.store.load(again.job_id)
    assert record is not None and record.result is not None
    after.leases.stop()


@pytest.mark.parametrize("status", ["received", "collected", "settling"])
def test_a_paid_transaction_in_another_status_is_adopted(server: RedisProcess, status: str) -> None:
    """After a restore the job is queued again; the API has moved its paid transaction
    on to another paid status (received, collected), or to one no source names. It is
    adopted, not taken for "no transaction", and no second one is made: a paid status
    ends the job as succeeded, an unknown one is waited on."""
    app = SandboxApp()
    pipeline = pipeline_on(app, server.url)
    job_id = pipeline.store.admit(job()).job_id
    pipeline.store.redis.save()
    assert drive(pipeline, job_id) == Finished("succeeded")
    [tx] = app.world.transactions.values()
    tx.status = status
    after = restart(server, pipeline, app)
    outcome = drive(after, job_id, limit=5)
    if status == "settling":
        assert isinstance(outcome, RetryLater) and "is settling" in outcome.reason
    else:
        assert outcome == Finished("succeeded")
    assert len(app.world.transactions) == 1 and len(app.world.ledger) == 1
    after.leases.stop()


def test_a_restored_job_that_cannot_look_up_is_dead_lettered_as_possibly_loaded(
    server: RedisProcess,
) -> None:
    app = SandboxApp()
    pipeline = pipeline_on(app, server.url)
    job_id = pipeline.store.admit(job()).job_id
    pipeline.store.redis.save()
    assert drive(pipeline, job_id) == Finished("succeeded")
    after = restart(server, pipeline, app)
    app.faults.configure(
        FaultSettings.model_validate({"rules": [{"kind": "error_503", "endpoint": "list"}]})
    )
    assert drive(after, job_id) == Finished("dead-lettered")
    letter = DeadLetterStore(after.store.redis, "test:dlq").get(job_id)
    assert letter is not None and letter.load_uncertain  # it was loaded, before the restore
    assert app.requests["create"] == 1  # never a second create without the lookup
    after.leases.stop()


def test_a_key_reused_for_other_content_after_a_restore_is_a_conflict(
    server: RedisProcess,
) -> None:
    """Had Redis kept the key, the second job would have been refused for its other
    content; the API's transaction under the key refuses it now."""
    app = SandboxApp()
    pipeline = pipeline_on(app, server.url)
    pipeline.store.redis.save()
    first = pipeline.store.admit(job()).job_id
    assert drive(pipeline, first) == Finished("succeeded")
    after = restart(server, pipeline, app)
    other = CardLoadJob(idempotency_key="order-1", card_number=GIFT_CARD, amount_cents=5000)
    assert after.store.admit(other).created
    assert drive(after, other.job_id) == Finished("dead-lettered")
    letter = DeadLetterStore(after.store.redis, "test:dlq").get(other.job_id)
    assert letter is not None and letter.error.kind == "conflict"
    assert [e["card_number"] for e in app.world.ledger] == [SEED_CARD]  # GIFT_CARD: never
    assert [e.type for e in events(server.url)] == ["card_load.failed"]
    after.leases.stop()


def test_a_key_lost_with_its_record_whose_lookup_fails_is_possibly_loaded(
    server: RedisProcess,
) -> None:
    """The record and the key are gone; the lookup that would find the first load cannot
    answer: the dead letter cannot say "not loaded"."""
    app = SandboxApp()
    pipeline = pipeline_on(app, server.url)
    pipeline.store.redis.save()
    assert drive(pipeline, pipeline.store.admit(job()).job_id) == Finished("succeeded")
    after = restart(server, pipeline, app)
    again = after.store.admit(job()).job_id
    app.faults.configure(
        FaultSettings.model_validate({"rules": [{"kind": "error_503", "endpoint": "list"}]})
    )
    assert drive(after, again) == Finished("dead-lettered")
    letter = DeadLetterStore(after.store.redis, "test:dlq").get(again)
    assert letter is not None and letter.load_uncertain
    assert len(app.world.ledger) == 1
    after.leases.stop()
