"""The pipeline's steps against the in-process sandbox and a real Redis: every retry,
reconciliation and dead-letter path, fast and without Celery."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from cardload.deadletters import DeadLetter, DeadLetterStore
from cardload.events import CardLoadFailed, CardLoadSucceeded, EventStream
from cardload.jobs import CardLoadJob, ExtraLine, JobSource, JobStatus, keys
from cardload.jobs.store import Claimed
from cardload.pipeline import Continue, Finished, Outcome, Pipeline, RetryLater
from cardload.pipeline.request import build_create_request
from cardload.pipeline.runtime import build_pipeline
from cardload.sandbox import GIFT_CARD, LOCKED_CARD, SEED_CARD, SandboxApp, SandboxTransport
from cardload.sandbox.engine import Payment
from cardload.secuconnect import TokenUnavailableError
from tests.services import in_thread, wait_for
from tests.support import assert_seed_result, make_settings, seed


@pytest.fixture
def pipeline(app: SandboxApp, real_redis: redis.Redis) -> Iterator[Pipeline]:
    settings = make_settings("redis://unused", "http://sandbox.test")
    built = build_pipeline(
        settings, client=real_redis, transport=SandboxTransport(app, sleep=lambda _: None)
    )
    built.uniform = lambda: 0.5
    yield built
    built.leases.stop()
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
    from cardload.sandbox import FaultSettings

    app.faults.configure(FaultSettings.model_validate({"rules": list(rules)}))


def events(pipeline: Pipeline) -> list[CardLoadSucceeded | CardLoadFailed]:
    return [entry.event for entry in EventStream(pipeline.store.redis, "test:events").read()]


def dead_letter(pipeline: Pipeline, job_id: str) -> DeadLetter | None:
    return DeadLetterStore(pipeline.store.redis, "test:dlq").get(job_id)


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
    assert [type(o) for o in outcomes] == [Continue, Finished]
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


def test_rate_limit_honours_retry_after(app: SandboxApp, real_redis: redis.Redis) -> None:
    settings = make_settings("redis://unused", "http://sandbox.test", retry={"max_backoff_s": 5.0})
    pipeline = build_pipeline(settings, client=real_redis, transport=SandboxTransport(app))
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
    letter = dead_letter(pipeline, job_id)
    assert letter is not None
    assert (letter.error.kind, letter.error.http_status, letter.error.api_error) == (
        "permanent",
        400,
        "ProductNotAllowedException",
    )
    # The API's text quotes the card: masked on arrival, everywhere after.
    assert letter.error.api_error_details == "idents[0].value: card 927600******0001 is locked"
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
    letter = dead_letter(pipeline, job_id)
    assert letter is not None and letter.transaction_id is not None
    # A 503 to a POST may follow a commit behind a gateway: ambiguous, not "nothing".
    assert letter.error.kind == "ambiguous" and "after 4 attempts" in letter.error.message
    assert app.world.ledger == []
    [failed] = events(pipeline)
    # The last start was answered 503 by a gateway: the API behind it may still commit
    # it after any read that shows "created". So the card may be loaded; replay settles.
    assert isinstance(failed, CardLoadFailed) and failed.load_uncertain
    assert letter.load_uncertain

    faults(app)
    assert pipeline.store.reopen(job_id)
    assert dead_letter(pipeline, job_id) is None
    run(pipeline, job_id)
    record = pipeline.store.load(job_id)
    assert record is not None and record.status is JobStatus.SUCCEEDED and record.generation == 1
    assert record.transaction_id == letter.transaction_id  # the same transaction, not a new one
    assert len(app.world.transactions) == 1 and len(app.world.ledger) == 1
    assert [e.type for e in events(pipeline)] == ["card_load.failed", "card_load.succeeded"]
    assert not pipeline.store.reopen(job_id)  # only dead letters can be replayed


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
    assert dead_letter(pipeline, job_id) is not None
    assert len(app.world.ledger) == 1
    [failed] = events(pipeline)
    assert isinstance(failed, CardLoadFailed) and failed.load_uncertain  # and it was loaded
    faults(app)
    pipeline.store.reopen(job_id)
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
    # Looked up before each create (CARDLOAD_JOBS_CREATE_LOOKUP=always): found the lost one.
    assert app.requests["create"] == 1 and app.requests["list"] == 2
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
    assert isinstance(event, CardLoadSucceeded) and event.balances is not None
    assert event.balances.cash_cents == 2200


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
    assert pipeline.start(job_id) == Finished("already succeeded")
    assert pipeline.publish(job_id) == Finished("published")  # cardload 0.1's step: no-op
    assert len(app.world.ledger) == 1 and len(app.world.transactions) == 1
    assert len(events(pipeline)) == 1


def test_a_job_leased_by_another_delivery_waits(app: SandboxApp, pipeline: Pipeline) -> None:
    job_id = admit(pipeline)
    other = pipeline.store.claim(job_id, "create", lease_ms=400, max_attempts=4)
    assert isinstance(other, Claimed)
    outcome = pipeline.create(job_id)
    assert isinstance(outcome, RetryLater) and 0.3 < outcome.delay_s <= 0.5
    assert app.requests["create"] == 0
    pipeline.store.release(other.lease)
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
    from cardload.sandbox.world import GIFT_GROUP_ID

    job_id = admit(pipeline, card_number=None, card_group_id=GIFT_GROUP_ID, amount_cents=5000)
    run(pipeline, job_id)
    [event] = events(pipeline)
    assert isinstance(event, CardLoadSucceeded) and event.balances is not None
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
    crashed = pipeline.store.claim(job_id, "start", lease_ms=60_000, max_attempts=4)
    assert isinstance(crashed, Claimed)
    pipeline.store.release(crashed.lease)
    app.engine.start(record.transaction_id, "cash")
    reads = iter([stale])
    real_get = pipeline.client.get
    monkeypatch.setattr(pipeline.client, "get", lambda tx_id: next(reads, None) or real_get(tx_id))
    assert run(pipeline, job_id, first="start")[-1] == Finished("succeeded")
    assert len(app.world.ledger) == 1
    assert app.requests["start"] == 1  # ours, refused: the transaction was already ok


# --- overlapping deliveries, payments in flight, ambiguous answers ------------------------


def wait_until_ok(app: SandboxApp, tx_id: str) -> None:
    def ok() -> bool:
        with app._lock:
            app.engine.settle()
            return app.world.transactions[tx_id].status == "ok"

    wait_for(ok, 5, "the payment to complete")


def created_tx(pipeline: Pipeline, job_id: str) -> str:
    assert pipeline.create(job_id) == Continue("start")
    record = pipeline.store.load(job_id)
    assert record is not None and record.transaction_id
    return record.transaction_id


def test_a_start_refused_while_the_payment_is_processing_is_waited_on(
    app: SandboxApp, pipeline: Pipeline
) -> None:
    job_id = admit(pipeline)
    tx_id = created_tx(pipeline, job_id)
    # Another delivery started it a moment ago; the payment takes a while.
    app.engine.start(tx_id, "cash", Payment(processing_s=0.3))
    outcome = pipeline.start(job_id)  # our POST is refused: the transaction is not created
    assert isinstance(outcome, RetryLater) and "is processing" in outcome.reason
    assert app.requests["start"] == 1 and dead_letter(pipeline, job_id) is None
    record = pipeline.store.load(job_id)
    assert record is not None and record.status is JobStatus.STARTING and record.load_uncertain
    wait_until_ok(app, tx_id)
    assert run(pipeline, job_id, first="start") == [Finished("succeeded")]
    assert len(app.world.ledger) == 1 and app.requests["start"] == 1
    assert [e.type for e in events(pipeline)] == ["card_load.succeeded"]


def test_a_payment_that_is_still_processing_is_read_again(
    app: SandboxApp, pipeline: Pipeline
) -> None:
    faults(app, {"kind": "processing", "delay_ms": 300, "times": 1})
    job_id = admit(pipeline)
    tx_id = created_tx(pipeline, job_id)
    assert isinstance(pipeline.start(job_id), RetryLater)
    wait_until_ok(app, tx_id)
    assert pipeline.start(job_id) == Finished("succeeded")
    assert app.requests["start"] == 1 and app.requests["get"] == 1
    assert len(app.world.ledger) == 1
    [event] = events(pipeline)
    assert isinstance(event, CardLoadSucceeded) and event.balances is not None
    assert event.balances.cash_cents == 2200


def test_a_delivery_that_lost_its_lease_writes_nothing_and_runs_again(
    app: SandboxApp, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delivery A froze inside its start past its lease; B took the job over and
    finished it. A's late writes are refused (not ignored): A runs again, reads, stops."""
    job_id = admit(pipeline)
    tx_id = created_tx(pipeline, job_id)
    b = build_pipeline(
        pipeline.settings, client=pipeline.store.redis, transport=pipeline_transport(app)
    )
    real_start = pipeline.client.start
    seen: list[Outcome] = []

    def frozen_start(tx: str, method: str | None) -> Any:
        pipeline.store.redis.hset(keys.job(job_id), "lock_until_ms", 0)  # A's lease ran out
        seen.append(b.start(job_id))  # B takes over: reads created, starts, succeeds
        return real_start(tx, method)  # A's start arrives late: refused

    monkeypatch.setattr(pipeline.client, "start", frozen_start)
    outcome = pipeline.start(job_id)
    assert seen == [Finished("succeeded")]
    assert isinstance(outcome, RetryLater) and "taken over" in outcome.reason
    monkeypatch.undo()
    assert pipeline.start(job_id) == Finished("already succeeded")
    assert len(app.world.ledger) == 1 and app.requests["start"] == 2
    assert [e.type for e in events(pipeline)] == ["card_load.succeeded"]
    record = pipeline.store.load(job_id)
    assert record is not None and record.result is not None
    assert record.result.transaction_id == tx_id and record.attempts == {"create": 1, "start": 2}
    b.leases.stop()
    b.client.close()


def pipeline_transport(app: SandboxApp) -> SandboxTransport:
    return SandboxTransport(app, sleep=lambda _: None)


@pytest.mark.parametrize("status", ["503", "408"])
def test_a_gateway_error_after_the_start_committed_is_ambiguous(
    app: SandboxApp, pipeline: Pipeline, status: str
) -> None:
    faults(app, {"kind": "commit_then_lose", "endpoint": "start", "lose_as": status, "times": 1})
    job_id = admit(pipeline)
    outcomes = run(pipeline, job_id)
    assert outcomes[-1] == Finished("succeeded")
    assert app.requests["start"] == 1 and app.requests["get"] == 1  # read, never started again
    assert len(app.world.ledger) == 1


@pytest.mark.parametrize("status", ["503", "408"])
def test_a_gateway_error_after_the_create_committed_makes_one_transaction(
    app: SandboxApp, pipeline: Pipeline, status: str
) -> None:
    faults(app, {"kind": "commit_then_lose", "endpoint": "create", "lose_as": status, "times": 1})
    job_id = admit(pipeline)
    assert run(pipeline, job_id)[-1] == Finished("succeeded")
    assert len(app.world.transactions) == 1 and app.requests["list"] == 2  # before each create
    assert len(app.world.ledger) == 1


def last_attempt_pipeline(app: SandboxApp, client: redis.Redis) -> Pipeline:
    settings = make_settings("redis://unused", "http://sandbox.test", retry={"max_attempts": 1})
    return build_pipeline(settings, client=client, transport=pipeline_transport(app))


def test_a_503_to_the_last_start_is_read_back_before_failing(
    app: SandboxApp, real_redis: redis.Redis
) -> None:
    pipeline = last_attempt_pipeline(app, real_redis)
    faults(app, {"kind": "commit_then_lose", "endpoint": "start", "lose_as": "503", "times": 1})
    job_id = admit(pipeline)
    assert run(pipeline, job_id)[-1] == Finished("succeeded")  # the read found it ok
    assert dead_letter(pipeline, job_id) is None and len(app.world.ledger) == 1
    pipeline.leases.stop()


def test_a_503_to_the_last_start_that_cannot_be_read_back_is_uncertain(
    app: SandboxApp, real_redis: redis.Redis
) -> None:
    pipeline = last_attempt_pipeline(app, real_redis)
    faults(
        app,
        {"kind": "commit_then_lose", "endpoint": "start", "lose_as": "503", "times": 1},
        {"kind": "error_503", "endpoint": "get"},
    )
    job_id = admit(pipeline)
    assert run(pipeline, job_id)[-1] == Finished("dead-lettered")
    letter = dead_letter(pipeline, job_id)
    assert letter is not None and letter.load_uncertain and letter.error.kind == "ambiguous"
    [failed] = events(pipeline)
    assert isinstance(failed, CardLoadFailed) and failed.load_uncertain
    assert len(app.world.ledger) == 1  # it was loaded indeed: the flag told the truth
    pipeline.leases.stop()


# --- the access token ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "error_502", "endpoint": "token"},  # an HTML page from a gateway
        {"kind": "error_503", "endpoint": "token"},
        {"kind": "reset", "endpoint": "token"},
    ],
)
def test_a_failing_token_endpoint_costs_no_attempt_and_no_dead_letter(
    app: SandboxApp, pipeline: Pipeline, rule: dict[str, Any]
) -> None:
    faults(app, rule | {"times": 3})
    job_id = admit(pipeline)
    waits = [pipeline.create(job_id) for _ in range(3)]
    assert all(isinstance(w, RetryLater) for w in waits)
    record = pipeline.store.load(job_id)
    assert record is not None and record.status is JobStatus.QUEUED and record.attempts == {}
    wait_for(lambda: pipeline.create(job_id) == Continue("start"), 10, "a token")
    assert run(pipeline, job_id, first="start")[-1] == Finished("succeeded")
    record = pipeline.store.load(job_id)
    assert record is not None and record.attempts == {"create": 1, "start": 1}


def test_refused_credentials_make_jobs_wait_not_fail(
    app: SandboxApp, real_redis: redis.Redis
) -> None:
    settings = make_settings(
        "redis://unused", "http://sandbox.test", secuconnect={"client_secret": "wrong"}
    )
    pipeline = build_pipeline(settings, client=real_redis, transport=pipeline_transport(app))
    job_id = admit(pipeline)
    outcome = pipeline.create(job_id)
    assert isinstance(outcome, RetryLater) and "invalid_client" in outcome.reason
    assert "wrong" not in outcome.reason
    record = pipeline.store.load(job_id)
    assert record is not None and record.status is JobStatus.QUEUED and record.attempts == {}
    assert dead_letter(pipeline, job_id) is None
    pipeline.leases.stop()


def test_one_token_fetch_however_many_steps_wait_for_it(
    app: SandboxApp, real_redis: redis.Redis
) -> None:
    """The token lock is held for the whole fetch, however long it takes: the other
    steps wait for that one token, none fetches its own, none burns an attempt."""
    faults(app, {"kind": "slow", "endpoint": "token", "delay_ms": 500, "times": 1})
    settings = make_settings("redis://unused", "http://sandbox.test")
    pipeline = build_pipeline(settings, client=real_redis, transport=SandboxTransport(app))
    jobs = [admit(pipeline, idempotency_key=f"t-{i}") for i in range(8)]

    def drive(job_id: str) -> None:
        run(pipeline, job_id)

    threads = [in_thread(functools.partial(drive, j)) for j in jobs]
    for thread in threads:
        thread.join(30)
    assert app.requests["token"] == 1
    records = pipeline.store.load_many(jobs, history=False)
    assert all(r is not None and r.status is JobStatus.SUCCEEDED for r in records)
    assert all(r is not None and r.attempts == {"create": 1, "start": 1} for r in records)
    pipeline.leases.stop()


def test_the_success_event_is_out_when_the_start_step_returns(
    app: SandboxApp, pipeline: Pipeline
) -> None:
    """No message between the success and its event that could be lost: the start step
    that loads the card has announced it by the time it returns."""
    job_id = admit(pipeline)
    assert pipeline.create(job_id) == Continue("start")
    assert pipeline.start(job_id) == Finished("succeeded")  # nothing more to send
    [event] = events(pipeline)
    assert isinstance(event, CardLoadSucceeded) and event.job_id == job_id
    record = pipeline.store.load(job_id)
    assert record is not None and record.done


# --- what a dead letter says, and what never becomes one ----------------------------------


def test_a_takeover_on_the_last_attempt_leaves_the_load_open(
    app: SandboxApp, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holds the last start attempt and freezes just before its POST; its lease runs
    out, B claims one attempt too many and reads "created". A's POST may still land (it
    does here): B's dead letter must say the card may have been loaded."""
    settings = make_settings("redis://unused", "http://sandbox.test", retry={"max_attempts": 2})
    a, b = (
        build_pipeline(settings, client=real_redis, transport=pipeline_transport(app))
        for _ in range(2)
    )
    job_id = admit(a)
    assert a.create(job_id) == Continue("start")
    faults(app, {"kind": "error_503", "endpoint": "start", "times": 1})
    assert isinstance(a.start(job_id), RetryLater)  # attempt 1: ambiguous
    real_start = a.client.start
    seen: list[Outcome] = []

    def frozen_start(tx: str, method: str | None) -> Any:
        real_redis.hset(keys.job(job_id), "lock_until_ms", 0)  # A froze; its lease ran out
        seen.append(b.start(job_id))
        return real_start(tx, method)  # A wakes: its start goes out, and loads the card

    monkeypatch.setattr(a.client, "start", frozen_start)
    assert isinstance(a.start(job_id), RetryLater)  # A's writes are fenced off
    assert seen == [Finished("dead-lettered")]
    letter = DeadLetterStore(real_redis, "test:dlq").get(job_id)
    assert len(app.world.ledger) == 1
    assert letter is not None and letter.load_uncertain
    for pipeline in (a, b):
        pipeline.leases.stop()


class DelayedCommit(httpx.BaseTransport):
    """A gateway that answers 503 to the first start at once while the API behind it
    holds the request and commits it later, after any read."""

    def __init__(self, app: SandboxApp) -> None:
        self.inner = pipeline_transport(app)
        self.held: httpx.Request | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/start/cash") and self.held is None:
            request.read()
            self.held = request
            return httpx.Response(503, html="<html>503</html>", request=request)
        return self.inner.handle_request(request)


def test_a_start_answered_503_stays_open_however_often_it_reads_created(
    app: SandboxApp, real_redis: redis.Redis
) -> None:
    transport = DelayedCommit(app)
    settings = make_settings("redis://unused", "http://sandbox.test", retry={"max_attempts": 1})
    pipeline = build_pipeline(settings, client=real_redis, transport=transport)
    job_id = admit(pipeline)
    assert pipeline.create(job_id) == Continue("start")
    assert pipeline.start(job_id) == Finished("dead-lettered")  # read back: still created
    assert transport.held is not None
    transport.inner.handle_request(transport.held)  # ... and then the API commits it
    letter = dead_letter(pipeline, job_id)
    assert len(app.world.ledger) == 1
    assert letter is not None and letter.load_uncertain
    pipeline.store.reopen(job_id)
    assert run(pipeline, job_id)[-1] == Finished("succeeded")  # the replay settles it
    assert len(app.world.ledger) == 1
    pipeline.leases.stop()


def test_a_status_we_do_not_know_is_waited_on_and_failed_as_possibly_loaded(
    app: SandboxApp, real_redis: redis.Redis
) -> None:
    settings = make_settings(
        "redis://unused", "http://sandbox.test", jobs={"payment_timeout_s": 10}
    )
    pipeline = build_pipeline(settings, client=real_redis, transport=pipeline_transport(app))
    job_id = admit(pipeline)
    tx_id = created_tx(pipeline, job_id)
    app.engine.start(tx_id, "cash")
    app.world.transactions[tx_id].status = "settling"  # a status no source names
    outcome = pipeline.start(job_id)
    assert isinstance(outcome, RetryLater) and "is settling" in outcome.reason
    record = pipeline.store.load(job_id)
    assert record is not None and record.attempts == {"create": 1}  # waiting is no attempt
    real_redis.hset(keys.job(job_id), "pending_since_ms", 1)  # long ago: the timeout passed
    assert pipeline.start(job_id) == Finished("dead-lettered")
    letter = dead_letter(pipeline, job_id)
    assert letter is not None and letter.load_uncertain and letter.error.kind == "pending"
    pipeline.leases.stop()


class NoBalances(httpx.BaseTransport):
    """The API's answers carry the card without its balances."""

    def __init__(self, app: SandboxApp) -> None:
        self.inner = pipeline_transport(app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if "/Smart/Transactions/" in request.url.path and response.status_code == 200:
            body = json.loads(response.content)
            for ident in body.get("idents") or []:
                (ident.get("merchantcard") or {}).pop("balance", None)
            return httpx.Response(200, json=body, request=request)
        return response


def test_a_load_whose_answer_has_no_balances_still_succeeds(
    app: SandboxApp, real_redis: redis.Redis
) -> None:
    settings = make_settings("redis://unused", "http://sandbox.test")
    pipeline = build_pipeline(settings, client=real_redis, transport=NoBalances(app))
    job_id = admit(pipeline)
    assert run(pipeline, job_id)[-1] == Finished("succeeded")
    [event] = events(pipeline)
    assert isinstance(event, CardLoadSucceeded) and event.balances is None
    assert event.receipt.lines  # the receipt still says what was loaded
    pipeline.leases.stop()


def test_a_step_that_crashes_is_retried_then_dead_lettered_never_looping(
    app: SandboxApp, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = admit(pipeline)
    assert pipeline.create(job_id) == Continue("start")

    def broken(*_: Any) -> Any:
        raise KeyError("an answer nobody planned for")

    monkeypatch.setattr(pipeline.client, "get", broken)
    faults(app, {"kind": "error_503", "endpoint": "start", "times": 1})
    outcomes = run(pipeline, job_id, first="start")
    assert outcomes[-1] == Finished("dead-lettered")
    letter = dead_letter(pipeline, job_id)
    assert letter is not None and letter.error.kind == "internal"
    assert letter.load_uncertain  # its start was answered 503: it may have landed
    assert "KeyError" in letter.error.message


def test_no_token_mid_step_is_a_wait_not_a_dead_letter(
    app: SandboxApp, real_redis: redis.Redis
) -> None:
    """The cached token is refused (revoked early) and no new one can be had: the step
    gives its attempt back and waits, however often it happens."""
    settings = make_settings("redis://unused", "http://sandbox.test", retry={"max_attempts": 2})
    pipeline = build_pipeline(settings, client=real_redis, transport=pipeline_transport(app))
    job_id = admit(pipeline)
    assert pipeline.create(job_id) == Continue("start")

    def token_back() -> bool:
        try:
            pipeline.client.authenticate()
        except TokenUnavailableError:
            return False
        return True

    for _ in range(4):
        app.auth.expire_all()  # the token in the cache is refused by the API...
        faults(app, {"kind": "error_503", "endpoint": "token", "times": 1})  # ...no new one
        outcome = pipeline.start(job_id)
        assert isinstance(outcome, RetryLater) and "token" in outcome.reason
        wait_for(token_back, 5, "the token backoff to pass")
        app.auth.expire_all()
    record = pipeline.store.load(job_id)
    assert record is not None and record.status is JobStatus.STARTING
    assert record.attempts == {"create": 1}  # every wait given back
    faults(app)
    assert run(pipeline, job_id, first="start")[-1] == Finished("succeeded")
    pipeline.leases.stop()


# --- the lookup before create: only the job's own transaction ---------------------------


def foreign_transaction(pipeline: Pipeline, key: str, cents: int, *, start: bool) -> str:
    """A transaction someone else made under ``key`` (another installation, 0.1, a key
    reused after Redis lost it): SEED_CARD, ``cents``."""
    secu = pipeline.settings.secuconnect
    assert secu.contract_id and secu.device_id
    other = CardLoadJob(idempotency_key=key, card_number=SEED_CARD, amount_cents=cents)
    request = build_create_request(other, contract_id=secu.contract_id, device_id=secu.device_id)
    tx = pipeline.client.create(request)
    if start:
        pipeline.client.start(tx.id, "cash")
    return tx.id


@pytest.mark.parametrize(
    ("started", "cents", "why"),
    [
        (True, 30000, "for another card"),
        (False, 30000, "for another card"),
        (True, 100, "it loads 100 cents, the job 30000"),
    ],
)
def test_a_transaction_for_other_content_under_the_key_is_never_adopted(
    app: SandboxApp, pipeline: Pipeline, started: bool, cents: int, why: str
) -> None:
    foreign = foreign_transaction(pipeline, "order-9", cents, start=started)
    job_id = admit(pipeline, idempotency_key="order-9", card_number=GIFT_CARD, amount_cents=30000)
    assert run(pipeline, job_id) == [Finished("dead-lettered")]
    letter = dead_letter(pipeline, job_id)
    assert letter is not None and letter.error.kind == "conflict"
    assert foreign in letter.error.message and why in letter.error.message
    assert not letter.load_uncertain  # looked up: nothing of this job exists
    assert app.requests["create"] == 1 and app.requests["start"] == int(started)
    assert [e["card_number"] for e in app.world.ledger] == [SEED_CARD] * int(started)
    assert not [e for e in app.world.ledger if e["card_number"] == GIFT_CARD]


def test_the_job_own_transaction_is_adopted_beside_a_foreign_one(
    app: SandboxApp, pipeline: Pipeline
) -> None:
    faults(app, {"kind": "commit_then_lose", "endpoint": "create", "times": 1})
    job_id = admit(pipeline)  # order-1: 2000 cents onto SEED_CARD
    assert isinstance(pipeline.create(job_id), RetryLater)  # ours made, its answer lost
    foreign_transaction(pipeline, "order-1", 100, start=False)  # then someone else's
    assert run(pipeline, job_id)[-1] == Finished("succeeded")
    assert [(e["card_number"], e["amount_cents"]) for e in app.world.ledger] == [(SEED_CARD, 2000)]
    assert app.requests["create"] == 2  # the foreign one, and ours (lost, then found)


@pytest.mark.parametrize("key", ["order-*", "order-?", "*", "order-1*", "?rder-12"])
@pytest.mark.parametrize("lost", ["response", "request"])
def test_a_lost_create_never_adopts_another_jobs_transaction_whatever_its_key(
    app: SandboxApp, pipeline: Pipeline, key: str, lost: str
) -> None:
    """Other jobs' transactions for the same card and amount, under keys the search's
    wildcards in ours would match. Our create is lost: its answer (the transaction was
    made) or the request itself (it was not). Only our own is ever adopted."""
    for other in ("order-1", "order-12", "order-x", "xorder-1"):
        foreign_transaction(pipeline, other, 2000, start=other == "order-12")
    kind = "commit_then_lose" if lost == "response" else "reset"
    faults(app, {"kind": kind, "endpoint": "create", "times": 1})
    job_id = admit(pipeline, idempotency_key=key)
    assert run(pipeline, job_id)[-1] == Finished("succeeded")
    record = pipeline.store.load(job_id)
    assert record is not None and record.transaction_id is not None
    ours = app.world.transactions[record.transaction_id]
    assert ours.merchant_ref == key and ours.status == "ok"
    mine = [tx for tx in app.world.transactions.values() if tx.merchant_ref == key]
    assert len(mine) == 1  # one transaction under our key, whichever way it was lost
    started = sorted(
        tx.merchant_ref or "" for tx in app.world.transactions.values() if tx.status == "ok"
    )
    assert started == sorted([key, "order-12"])


# --- the start's message pushed with the create's end (a Redis broker that is this Redis)


def test_the_start_message_is_pushed_with_the_creates_end(
    pipeline: Pipeline, real_redis: redis.Redis
) -> None:
    job_id = admit(pipeline)
    asked: list[tuple[str, str]] = []

    def next_message(step: Any, for_job: str) -> tuple[str, str]:
        asked.append((step, for_job))
        return "test:queue", f"start {for_job}"

    assert pipeline.create(job_id, next_message) == Continue("start", queued=True)
    assert asked == [("start", job_id)]
    assert real_redis.lrange("test:queue", 0, -1) == [f"start {job_id}".encode()]
    record = pipeline.store.load(job_id)
    assert record is not None and record.status is JobStatus.CREATED and record.transaction_id
    # Without a message (kombu's path) the task sends it: nothing is pushed.
    job_b = admit(pipeline, idempotency_key="order-2")
    assert pipeline.create(job_b, lambda step, job: None) == Continue("start")
    assert pipeline.create(admit(pipeline, idempotency_key="order-3")) == Continue("start")
    assert real_redis.llen("test:queue") == 1


def test_a_create_that_lost_its_lease_pushes_no_start(
    app: SandboxApp, pipeline: Pipeline, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken over while it created: its end is refused, and its start message with it
    (the delivery holding the lease sends the one start)."""
    job_id = admit(pipeline)
    real_create = pipeline.client.create

    def slow_create(request: Any) -> Any:
        real_redis.hset(keys.job(job_id), "lock", "someone-else")
        return real_create(request)

    monkeypatch.setattr(pipeline.client, "create", slow_create)
    outcome = pipeline.create(job_id, lambda step, job: ("test:queue", "start"))
    assert isinstance(outcome, RetryLater) and "taken over" in outcome.reason
    assert real_redis.llen("test:queue") == 0
    record = pipeline.store.load(job_id)
    assert record is not None and record.status is JobStatus.CREATING


def test_a_lost_answer_after_the_push_sends_one_more_start_and_loads_once(
    app: SandboxApp, pipeline: Pipeline, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The script ran (created, start pushed) and its answer was lost: the task runs the
    create again, which finds the transaction and asks for a start the usual way. Two
    start messages then: the card is loaded once."""
    job_id = admit(pipeline)
    store = pipeline.store
    real_finish = store.finish_step

    def finish_then_drop(*args: Any, **kwargs: Any) -> None:
        real_finish(*args, **kwargs)
        raise redis.ConnectionError("connection lost reading the reply")

    monkeypatch.setattr(store, "finish_step", finish_then_drop)
    with pytest.raises(redis.ConnectionError):
        pipeline.create(job_id, lambda step, job: ("test:queue", "start"))
    monkeypatch.undo()
    assert real_redis.llen("test:queue") == 1
    assert pipeline.create(job_id, lambda step, job: ("test:queue", "start")) == Continue("start")
    assert real_redis.llen("test:queue") == 1  # the task sends this one itself
    assert [pipeline.start(job_id), pipeline.start(job_id)] == [
        Finished("succeeded"),
        Finished("already succeeded"),
    ]
    assert len(app.world.ledger) == 1 and app.requests["create"] == 1
    assert [e.type for e in events(pipeline)] == ["card_load.succeeded"]


def test_a_refused_push_leaves_the_create_unrecorded_and_it_runs_again(
    app: SandboxApp, pipeline: Pipeline, real_redis: redis.Redis
) -> None:
    """A script is not undone by an error: the push goes first, so a push Redis refuses
    (the key is not a list) writes nothing else, and the create runs again."""
    job_id = admit(pipeline)
    real_redis.set("test:queue", "not a list")
    with pytest.raises(redis.ResponseError):
        pipeline.create(job_id, lambda step, job: ("test:queue", "start"))
    record = pipeline.store.load(job_id)
    assert record is not None and record.status is JobStatus.CREATING
    assert record.transaction_id is None
    assert not real_redis.hexists(keys.job(job_id), "lock")  # the lease given back
    real_redis.delete("test:queue")
    outcome = pipeline.create(job_id, lambda step, job: ("test:queue", "start"))
    assert outcome == Continue("start", queued=True)
    assert real_redis.llen("test:queue") == 1
    assert app.requests["create"] == 1  # the first transaction found and adopted
    assert [pipeline.start(job_id)] == [Finished("succeeded")] and len(app.world.ledger) == 1
