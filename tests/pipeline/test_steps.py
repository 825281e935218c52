"""The pipeline's steps against the in-process sandbox and fakeredis: every retry,
reconciliation and dead-letter path, fast and without Celery."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest

from events import CardLoadFailed, CardLoadSucceeded
from jobs import CardLoadJob, ExtraLine, JobSource, JobStatus
from pipeline import Continue, Finished, Outcome, Pipeline, RetryLater
from pipeline.runtime import build_pipeline
from sandbox import LOCKED_CARD, SEED_CARD, SandboxApp, SandboxTransport
from tests.support import assert_seed_result, make_settings, seed


@pytest.fixture
def pipeline(app: SandboxApp, fake_redis: fakeredis.FakeRedis) -> Iterator[Pipeline]:
    settings = make_settings("redis://unused", "http://sandbox.test")
    built = build_pipeline(
        settings, client=fake_redis, transport=SandboxTransport(app, sleep=lambda _: None)
    )
    built.uniform = lambda: 0.5
    yield built
    built.client.close()


def run(pipeline: Pipeline, job_id: str, first: str = "create", limit: int = 50) -> list[Outcome]:
    """Drive a job like the tasks do, but without waiting out retry delays."""
    step, outcomes = first, []
    for _ in range(limit):
        outcome = getattr(pipeline, step)(job_id)
        outcomes.append(outcome)
        if isinstance(outcome, Continue):
            step = outcome.step
        elif isinstance(outcome, Finished):
            return outcomes
    raise AssertionError(f"job did not finish: {outcomes}")


def admit(pipeline: Pipeline, **fields: Any) -> str:
    job = CardLoadJob.model_validate(
        {"idempotency_key": "order-1", "card_number": SEED_CARD, "amount_cents": 2000} | fields
    )
    return pipeline.store.admit(job).job_id


def faults(app: SandboxApp, *rules: dict[str, Any]) -> None:
    from sandbox import FaultSettings

    app.faults.configure(FaultSettings.model_validate({"rules": list(rules)}))


def events(pipeline: Pipeline) -> list[CardLoadSucceeded | CardLoadFailed]:
    return [entry.event for entry in pipeline.events.read()]


def test_seed_case(app: SandboxApp, pipeline: Pipeline) -> None:
    job_id = admit(
        pipeline,
        extra_lines=[
            ExtraLine(
                desc="Dining service Puslnitz, 26 pieces",
                price_one_cents=5900,
                tax=19,
                article_number="30200",
            )
        ],
        description="Kartenaufladung 20 EUR",
        source=JobSource(order_id="A-1"),
    )
    outcomes = run(pipeline, job_id)
    assert [type(o) for o in outcomes] == [Continue, Continue, Finished]
    record = pipeline.store.load(job_id)
    assert record is not None and record.status is JobStatus.SUCCEEDED
    [event] = events(pipeline)
    assert isinstance(event, CardLoadSucceeded)
    assert_seed_result(event, pipeline.store.load(job_id))
    assert "Aktuelles Guthaben:" in event.receipt.text and "30,10 EUR" in event.receipt.text
    assert event.card_number == "927600******4352"
    assert event.source.order_id == "A-1"
    assert event.event_id == f"{job_id}:succeeded"
    assert event.attempts == {"create": 1, "start": 1}


def test_503_then_success(app: SandboxApp, pipeline: Pipeline) -> None:
    faults(
        app,
        {"kind": "error_503", "endpoint": "create", "times": 2},
        {"kind": "error_503", "endpoint": "start", "times": 1},
    )
    job_id = admit(pipeline)
    outcomes = run(pipeline, job_id)
    assert sum(isinstance(o, RetryLater) for o in outcomes) == 3
    record = pipeline.store.load(job_id)
    assert record is not None and record.status is JobStatus.SUCCEEDED
    assert record.attempts == {"create": 3, "start": 2}
    assert len(app.world.ledger) == 1 and len(app.world.transactions) == 1


def test_rate_limit_honours_retry_after(app: SandboxApp, fake_redis: fakeredis.FakeRedis) -> None:
    settings = make_settings("redis://unused", "http://sandbox.test", retry={"max_backoff_s": 5.0})
    pipeline = build_pipeline(settings, client=fake_redis, transport=SandboxTransport(app))
    pipeline.uniform = lambda: 0.0  # the jittered delay alone would be 0 s
    faults(app, {"kind": "rate_limit", "endpoint": "start", "times": 1, "retry_after_s": 2})
    outcomes = run(pipeline, admit(pipeline))
    assert [o.delay_s for o in outcomes if isinstance(o, RetryLater)] == [2.0]
    assert app.requests["start"] == 2 and len(app.world.ledger) == 1


def test_permanent_error_is_dead_lettered_without_retries(
    app: SandboxApp, pipeline: Pipeline
) -> None:
    job_id = admit(pipeline, card_number=LOCKED_CARD)
    assert run(pipeline, job_id) == [Finished("dead-lettered")]
    record = pipeline.store.load(job_id)
    assert record is not None and record.status is JobStatus.DEAD_LETTERED
    assert record.attempts == {"create": 1}
    letter = pipeline.dead_letters.get(job_id)
    assert letter is not None
    assert (letter.error.kind, letter.error.http_status, letter.error.api_error) == (
        "permanent",
        400,
        "ProductNotAllowedException",
    )
    assert letter.error.api_error_details == "idents[0].value: card is locked"
    assert letter.error.support_id and letter.transaction_id is None
    [event] = events(pipeline)
    assert isinstance(event, CardLoadFailed) and event.error == letter.error
    assert not event.load_uncertain  # refused at create: nothing was started
    assert app.requests["create"] == 1


def test_exhausted_retries_then_replay_loads_once(app: SandboxApp, pipeline: Pipeline) -> None:
    faults(app, {"kind": "error_503", "endpoint": "start"})
    job_id = admit(pipeline)
    outcomes = run(pipeline, job_id)
    assert sum(isinstance(o, RetryLater) for o in outcomes) == 3  # 4 attempts in all
    letter = pipeline.dead_letters.get(job_id)
    assert letter is not None and letter.transaction_id is not None
    assert letter.error.kind == "retryable" and "after 4 attempts" in letter.error.message
    assert app.world.ledger == []
    [failed] = events(pipeline)
    # Every start was answered 503 (not processed): the card was certainly not loaded.
    assert isinstance(failed, CardLoadFailed) and not failed.load_uncertain

    faults(app)
    assert pipeline.dead_letters.reopen(job_id)
    assert pipeline.dead_letters.get(job_id) is None
    run(pipeline, job_id)
    record = pipeline.store.load(job_id)
    assert record is not None and record.status is JobStatus.SUCCEEDED and record.generation == 1
    assert record.transaction_id == letter.transaction_id  # the same transaction, not a new one
    assert len(app.world.transactions) == 1 and len(app.world.ledger) == 1
    assert [e.type for e in events(pipeline)] == ["card_load.failed", "card_load.succeeded"]
    assert not pipeline.dead_letters.reopen(job_id)  # only dead letters can be replayed


def test_replay_of_a_job_whose_transaction_is_ok_only_emits_success(
    app: SandboxApp, pipeline: Pipeline
) -> None:
    # The start takes effect but its answer is lost, and every read fails afterwards.
    faults(
        app,
        {"kind": "commit_then_lose", "endpoint": "start", "times": 1},
        {"kind": "error_503", "endpoint": "get"},
    )
    job_id = admit(pipeline)
    run(pipeline, job_id)
    assert pipeline.dead_letters.get(job_id) is not None
    assert len(app.world.ledger) == 1
    [failed] = events(pipeline)
    assert isinstance(failed, CardLoadFailed) and failed.load_uncertain  # and it was loaded
    faults(app)
    pipeline.dead_letters.reopen(job_id)
    run(pipeline, job_id)
    assert app.requests["start"] == 1  # read, found ok, never started again
    assert len(app.world.ledger) == 1
    assert [e.type for e in events(pipeline)] == ["card_load.failed", "card_load.succeeded"]


@pytest.mark.parametrize("lose_as", ["reset", "timeout"])
def test_commit_then_lose_on_create_makes_one_transaction(
    app: SandboxApp, pipeline: Pipeline, lose_as: str
) -> None:
    faults(app, {"kind": "commit_then_lose", "endpoint": "create", "times": 1, "lose_as": lose_as})
    job_id = admit(pipeline)
    run(pipeline, job_id)
    assert len(app.world.transactions) == 1
    assert app.requests["create"] == 1 and app.requests["list"] == 1  # found by merchantRef
    assert len(app.world.ledger) == 1
    assert [e.type for e in events(pipeline)] == ["card_load.succeeded"]


@pytest.mark.parametrize("lose_as", ["reset", "timeout"])
def test_commit_then_lose_on_start_loads_once(
    app: SandboxApp, pipeline: Pipeline, lose_as: str
) -> None:
    faults(app, {"kind": "commit_then_lose", "endpoint": "start", "times": 1, "lose_as": lose_as})
    job_id = admit(pipeline)
    run(pipeline, job_id)
    assert app.requests["start"] == 1 and app.requests["get"] == 1
    assert len(app.world.ledger) == 1
    [event] = events(pipeline)
    assert isinstance(event, CardLoadSucceeded) and event.balances.cash_cents == 2200


def test_a_second_transaction_for_the_same_job_is_never_started(
    app: SandboxApp, pipeline: Pipeline
) -> None:
    # A slow create landed after our lookup: two transactions carry the job's merchantRef.
    faults(app, {"kind": "commit_then_lose", "endpoint": "create", "times": 1})
    job_id = admit(pipeline)
    pipeline.create(job_id)
    body = seed("01-create-request.json") | {"merchantRef": "order-1"}
    app.engine.create(body)
    run(pipeline, job_id)
    started = [tx for tx in app.world.transactions.values() if tx.status == "ok"]
    assert len(app.world.transactions) == 2 and len(started) == 1
    assert len(app.world.ledger) == 1


def test_every_step_repeated_changes_nothing(app: SandboxApp, pipeline: Pipeline) -> None:
    job_id = admit(pipeline)
    run(pipeline, job_id)
    assert pipeline.create(job_id) == Finished("already succeeded")
    assert pipeline.start(job_id) == Continue("publish")
    assert pipeline.publish(job_id) == Finished("published")
    assert len(app.world.ledger) == 1 and len(app.world.transactions) == 1
    assert len(events(pipeline)) == 1


def test_a_job_locked_by_another_delivery_waits(app: SandboxApp, pipeline: Pipeline) -> None:
    job_id = admit(pipeline)
    token = pipeline.store.acquire(job_id, 5000)
    assert token
    outcome = pipeline.create(job_id)
    assert isinstance(outcome, RetryLater) and 4.5 < outcome.delay_s <= 5.5
    assert app.requests["create"] == 0
    pipeline.store.release(job_id, token)
    run(pipeline, job_id)
    assert len(app.world.ledger) == 1


def test_expired_token_is_refreshed(app: SandboxApp, pipeline: Pipeline) -> None:
    job_id = admit(pipeline)
    assert pipeline.create(job_id) == Continue("start")
    app.auth.expire_all()
    run(pipeline, job_id, first="start")
    assert app.requests["token"] == 2
    record = pipeline.store.load(job_id)
    assert record is not None and record.status is JobStatus.SUCCEEDED


def test_issue_a_card_from_a_card_group(app: SandboxApp, pipeline: Pipeline) -> None:
    from sandbox.world import GIFT_GROUP_ID

    job_id = admit(pipeline, card_number=None, card_group_id=GIFT_GROUP_ID, amount_cents=5000)
    run(pipeline, job_id)
    [event] = events(pipeline)
    assert isinstance(event, CardLoadSucceeded)
    assert event.balances.total_cents == 5000
    assert event.card_number and event.card_number.startswith("92761")


def test_unknown_job(pipeline: Pipeline) -> None:
    assert pipeline.create("nope") == Finished("unknown job")
    assert pipeline.start("nope") == Finished("unknown job")
    assert pipeline.publish("nope") == Finished("nothing to publish")


def test_a_start_refused_because_another_got_there_first_is_success(
    app: SandboxApp, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = admit(pipeline)
    assert pipeline.create(job_id) == Continue("start")
    record = pipeline.store.load(job_id)
    assert record is not None and record.transaction_id
    stale = pipeline.client.get(record.transaction_id)  # still "created"
    # An earlier delivery crashed mid-start; meanwhile the start went through.
    pipeline.store.transition(job_id, allowed=None, to=JobStatus.STARTING, count_attempt_of="start")
    app.engine.start(record.transaction_id, None)
    reads = iter([stale])
    real_get = pipeline.client.get
    monkeypatch.setattr(pipeline.client, "get", lambda tx_id: next(reads, None) or real_get(tx_id))
    assert run(pipeline, job_id, first="start")[-1] == Finished("published")
    assert len(app.world.ledger) == 1
    assert app.requests["start"] == 1  # ours, refused: the transaction was already ok
