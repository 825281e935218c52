"""``cardload reconcile``: the API's transactions of a period joined with the job
records, each case made for real against the sandbox (in process for the join, over
HTTP with the CLI)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from cardload.jobs import CardLoadJob, JobStatus, keys
from cardload.pipeline import Continue, Finished
from cardload.pipeline.request import build_create_request
from cardload.pipeline.runtime import build_pipeline
from cardload.reconcile import Reconciliation, reconcile
from cardload.sandbox import SEED_CARD, SandboxApp, SandboxTransport
from cardload.secuconnect.errors import RetryableError
from tests.support import make_settings


def test_each_kind_of_finding_and_apply_cancels_what_was_left_created(
    real_redis: redis.Redis,
) -> None:
    app = SandboxApp()
    settings = make_settings("redis://unused", "http://sandbox.test")
    pipeline = build_pipeline(
        settings, client=real_redis, transport=SandboxTransport(app, sleep=lambda _: None)
    )
    secu = settings.secuconnect
    assert secu.contract_id and secu.device_id
    contract, device = secu.contract_id, secu.device_id
    client, store = pipeline.client, pipeline.store

    def load(key: str, cents: int) -> CardLoadJob:
        job = CardLoadJob(idempotency_key=key, card_number=SEED_CARD, amount_cents=cents)
        job_id = store.admit(job).job_id
        assert isinstance(pipeline.create(job_id), Continue)
        assert pipeline.start(job_id) == Finished("succeeded")
        return job

    def extra(job: CardLoadJob, *, start: bool) -> str:
        request = build_create_request(job, contract_id=contract, device_id=device)
        tx = client.create(request)
        if start:
            client.start(tx.id, "cash")
        return tx.id

    try:
        ok = load("rec-ok", 100)
        dead = load("rec-dead", 200)
        real_redis.hset(keys.job(dead.job_id), "status", JobStatus.DEAD_LETTERED.value)
        twice = load("rec-twice", 300)
        second = extra(twice, start=True)
        ended = load("rec-ended", 400)
        left = extra(ended, start=False)
        stranger = CardLoadJob(
            idempotency_key="other-system", card_number=SEED_CARD, amount_cents=5
        )
        unclaimed = extra(stranger, start=True)
        running = CardLoadJob(idempotency_key="rec-running", card_number=SEED_CARD, amount_cents=6)
        running_id = store.admit(running).job_id
        assert isinstance(pipeline.create(running_id), Continue)  # created, start not yet

        now = datetime.now(UTC) + timedelta(seconds=5)
        result = reconcile(
            client, store, since=now - timedelta(hours=1), until=now,
            grace=timedelta(0), apply=True, now=now,
        )  # fmt: skip
        kinds = {f.transaction_id: f.kind for f in result.findings}
        by_ref = {
            f.merchant_ref: f for f in result.findings if f.transaction_id not in (second, left)
        }
        assert by_ref["rec-ok"].kind == "ok"
        assert by_ref["rec-dead"].kind == "loaded_anyway"
        assert kinds[second] == "second_load"
        assert kinds[left] == "left_created"
        assert kinds[unclaimed] == "unclaimed"
        assert by_ref["rec-running"].kind == "in_progress"
        assert result.counts()["ok"] == 3  # ok, the first of twice, ended's own
        cancelled = next(f for f in result.findings if f.transaction_id == left)
        assert cancelled.action == "cancelled" and not cancelled.needs_a_person
        assert client.get(left).status == "cancelled"
        assert sorted(f.kind for f in result.needs_a_person) == [
            "loaded_anyway", "second_load", "unclaimed",
        ]  # fmt: skip
        assert all("*" in f.card for f in result.findings)  # masked
        assert ok.idempotency_key in by_ref
    finally:
        pipeline.leases.stop()
        client.close()


def _made(count: int, real_redis: redis.Redis) -> tuple[Any, SandboxApp, list[str]]:
    """A pipeline on an in-process sandbox holding ``count`` started transactions (no job
    claims them), with their ids."""
    app = SandboxApp()
    settings = make_settings(
        "redis://unused", "http://sandbox.test", retry={"max_attempts": 5, "base_backoff_s": 0.01}
    )
    pipeline = build_pipeline(
        settings, client=real_redis, transport=SandboxTransport(app, sleep=lambda _: None)
    )
    secu = settings.secuconnect
    assert secu.contract_id and secu.device_id
    ids = []
    for i in range(count):
        job = CardLoadJob(idempotency_key=f"paged-{i}", card_number=SEED_CARD, amount_cents=1)
        request = build_create_request(job, contract_id=secu.contract_id, device_id=secu.device_id)
        ids.append(pipeline.client.create(request).id)
    return pipeline, app, ids


def _run(pipeline: Any, **kw: Any) -> Reconciliation:
    """Reconcile the last hour on this pipeline's sandbox (a created one older than
    ``grace``, one hour unless given, counts as left), then close the pipeline."""
    now = datetime.now(UTC) + timedelta(seconds=5)
    kw.setdefault("grace", timedelta(hours=1))
    try:
        return reconcile(
            pipeline.client, pipeline.store, since=now - timedelta(hours=1), until=now,
            now=now, **kw,
        )  # fmt: skip
    finally:
        pipeline.leases.stop()
        pipeline.client.close()


def test_pages_the_api_fails_to_give_are_asked_for_again(real_redis: redis.Redis) -> None:
    pipeline, app, ids = _made(250, real_redis)  # three pages
    rules = [
        {"kind": "error_503", "endpoint": "list", "times": 2},
        {"kind": "rate_limit", "endpoint": "list", "times": 1, "retry_after_s": 2},
        {"kind": "reset", "endpoint": "list", "times": 1},
    ]
    app.faults.configure(app.faults.settings.model_validate({"seed": 3, "rules": rules}))
    slept: list[float] = []
    result = _run(pipeline, retry=pipeline.settings.retry, sleep=slept.append)
    assert sorted(f.transaction_id for f in result.findings) == sorted(ids)
    assert len(slept) == 4 and max(slept) >= 2  # the 429's Retry-After kept


def test_a_transaction_made_while_paging_does_not_list_another_twice(
    real_redis: redis.Redis,
) -> None:
    pipeline, _, ids = _made(150, real_redis)
    search = pipeline.client.search
    made: list[str] = []

    def search_then_make(**kw: Any) -> Any:
        page = search(**kw)
        if not made:  # newest first: one more pushes the first page's last onto the next
            made.extend(_made_one(pipeline))
        return page

    pipeline.client.search = search_then_make
    result = _run(pipeline)
    listed = [f.transaction_id for f in result.findings]
    assert len(listed) == len(set(listed)) and set(ids) <= set(listed)


def _made_one(pipeline: Any) -> list[str]:
    secu = pipeline.settings.secuconnect
    job = CardLoadJob(idempotency_key="paged-late", card_number=SEED_CARD, amount_cents=1)
    request = build_create_request(job, contract_id=secu.contract_id, device_id=secu.device_id)
    return [pipeline.client.create(request).id]


def test_a_transaction_its_job_started_after_the_page_was_read_is_not_cancelled(
    real_redis: redis.Redis,
) -> None:
    pipeline, _, _ = _made(5, real_redis)
    job = CardLoadJob(idempotency_key="started-late", card_number=SEED_CARD, amount_cents=700)
    job_id = pipeline.store.admit(job).job_id
    assert isinstance(pipeline.create(job_id), Continue)
    search = pipeline.client.search

    def stale(**kw: Any) -> Any:
        page = search(**kw)  # lists it as created...
        assert pipeline.start(job_id) == Finished("succeeded")  # ...and then it is paid
        return page

    pipeline.client.search = stale
    result = _run(pipeline, grace=timedelta(0), apply=True)
    record = pipeline.store.load(job_id)
    assert record is not None and record.transaction_id
    finding = next(f for f in result.findings if f.transaction_id == record.transaction_id)
    assert (finding.kind, finding.action) == ("ok", "")
    assert finding.status == "ok"  # as read again: no cancel asked for (it would reverse)


def test_a_list_the_api_stops_giving_is_reported_incomplete_with_what_was_seen(
    real_redis: redis.Redis,
) -> None:
    pipeline, _, _ = _made(150, real_redis)
    search = pipeline.client.search

    def first_page_only(**kw: Any) -> Any:
        if kw["offset"]:
            raise RetryableError("GET answered 503", http_status=503)
        return search(**kw)

    pipeline.client.search = first_page_only
    result = _run(pipeline, retry=pipeline.settings.retry, sleep=lambda _: None)
    assert len(result.findings) == 100 and "503" in result.incomplete


def test_a_job_store_that_stops_answering_ends_it_incomplete_with_what_was_done(
    real_redis: redis.Redis,
) -> None:
    pipeline, _, _ = _made(150, real_redis)
    lookups = pipeline.store.job_ids_for_keys
    calls: list[int] = []

    def second_fails(refs: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            raise redis.ConnectionError("gone")
        return lookups(refs)

    pipeline.store.job_ids_for_keys = second_fails
    result = _run(pipeline)
    assert len(result.findings) == 100 and "ConnectionError" in result.incomplete
