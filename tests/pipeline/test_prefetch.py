"""A create's lookup made while its message waits: used on a first attempt only, ready
when the create runs (or waited for), and never taken for a job that has a
transaction, a key with wildcards, or an answer too old."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
import redis

from cardload.jobs import CardLoadJob, keys
from cardload.jobs.store import JobStore
from cardload.pipeline import Continue
from cardload.pipeline import prefetch as prefetch_module
from cardload.pipeline.lookups import TimedSearch
from cardload.pipeline.prefetch import LookupPrefetch
from cardload.pipeline.request import build_create_request
from cardload.pipeline.runtime import build_pipeline
from cardload.sandbox import GIFT_CARD, SandboxApp, SandboxTransport
from cardload.secuconnect import RetryableError, SmartTransaction
from tests.services import wait_for
from tests.support import make_settings


def _slow(search: Search | TimedSearch) -> TimedSearch:
    """As if searches took a real API's time: the lookahead is then worth it."""
    timed = search if isinstance(search, TimedSearch) else TimedSearch(search)
    timed.typical_s = 1.0
    return timed


class Search:
    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.delay_s, self.fail = delay_s, fail
        self.calls: list[list[str]] = []

    def __call__(self, keys: Sequence[str]) -> dict[str, list[SmartTransaction]]:
        self.calls.append(list(keys))
        time.sleep(self.delay_s)
        if self.fail:
            raise RetryableError("search failed")
        tx = SmartTransaction.model_construct
        return {key: [tx(id=f"STX_{key}", status="created")] for key in keys}


def _admit(real_redis: redis.Redis, key: str) -> str:
    job = CardLoadJob(idempotency_key=key, card_number=GIFT_CARD, amount_cents=100)
    return JobStore(real_redis).admit(job).job_id


def test_an_answer_looked_up_ahead_is_given_once(real_redis: redis.Redis) -> None:
    search = Search(delay_s=0.2)
    ahead = LookupPrefetch(JobStore(real_redis), _slow(search))
    ids = [_admit(real_redis, f"order-{i}") for i in range(5)]
    for job_id in ids:
        ahead.submit(job_id)
    # Taken while the search is under way: waited for, not looked up twice.
    assert [tx.id for tx in ahead.take(ids[0], wait_s=5) or []] == ["STX_order-0"]
    assert all(ahead.take(job_id, wait_s=5) for job_id in ids[1:])
    assert sum(len(keys) for keys in search.calls) == 5 and len(search.calls) <= 2
    assert ahead.take(ids[0], wait_s=5) is None  # once
    assert ahead.take("never-submitted", wait_s=5) is None  # at once, no wait


def test_nothing_is_taken_after_a_failed_search_or_for_a_job_past_its_create(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JobStore(real_redis)
    failing = LookupPrefetch(store, _slow(Search(fail=True)))
    job_id = _admit(real_redis, "order-f")
    failing.submit(job_id)
    assert failing.take(job_id, wait_s=5) is None

    search = Search()
    ahead = LookupPrefetch(store, _slow(search))
    created = _admit(real_redis, "order-c")
    real_redis.hset(keys.job(created), "transaction_id", "STX_" + "A" * 30)
    wild = _admit(real_redis, "order-*")
    for job in (created, wild):
        ahead.submit(job)
        assert ahead.take(job, wait_s=5) is None
    assert search.calls == []

    monkeypatch.setattr(prefetch_module, "MAX_AGE_S", 0.0)
    old = _admit(real_redis, "order-old")
    ahead.submit(old)
    time.sleep(0.05)
    assert ahead.take(old, wait_s=5) is None  # too old to trust


def test_a_first_attempt_uses_it_and_a_retry_looks_up_fresh(
    app: SandboxApp, real_redis: redis.Redis
) -> None:
    settings = make_settings("redis://unused", "http://sandbox.test")
    pipeline = build_pipeline(
        settings, client=real_redis, transport=SandboxTransport(app, sleep=lambda _: None)
    )
    secu = settings.secuconnect
    assert secu.contract_id and secu.device_id
    _slow(pipeline.prefetch._search)
    try:
        job = CardLoadJob(idempotency_key="ahead-1", card_number=GIFT_CARD, amount_cents=100)
        job_id = pipeline.store.admit(job).job_id
        pipeline.prefetch.submit(job_id)
        assert pipeline.prefetch.take(job_id, wait_s=5) == []  # nothing under the key yet
        pipeline.prefetch.submit(job_id)
        searches = app.requests["list"]
        assert isinstance(pipeline.create(job_id), Continue)
        assert app.requests["list"] == searches + 1  # the lookahead's, none of its own

        # A retry after an ambiguous create: the earlier attempt's transaction landed
        # after the lookahead ran; the retry ignores that answer and finds it.
        job2 = CardLoadJob(idempotency_key="ahead-2", card_number=GIFT_CARD, amount_cents=100)
        job2_id = pipeline.store.admit(job2).job_id
        pipeline.prefetch.submit(job2_id)
        pipeline.prefetch.submit(job2_id)
        # The lookahead answered "nothing" before the earlier attempt's create landed.
        wait_for(lambda: job2_id not in pipeline.prefetch._unanswered, 5, "the lookahead")
        request = build_create_request(job2, contract_id=secu.contract_id, device_id=secu.device_id)
        landed = pipeline.client.create(request).id
        real_redis.hincrby(keys.job(job2_id), "attempts_create", 1)  # attempt 1 happened
        assert isinstance(pipeline.create(job2_id), Continue)
        record = pipeline.store.load(job2_id)
        assert record is not None and record.transaction_id == landed
        assert len([tx for tx in app.world.transactions.values()]) == 2
    finally:
        pipeline.leases.stop()
        pipeline.client.close()


def test_no_lookahead_while_searches_answer_fast(real_redis: redis.Redis) -> None:
    search = TimedSearch(Search())
    ahead = LookupPrefetch(JobStore(real_redis), search)
    assert search.typical_s == 0.0
    search([])  # timed: next door
    job_id = _admit(real_redis, "order-near")
    ahead.submit(job_id)
    assert ahead.take(job_id, wait_s=5) is None  # the create looks up for itself
    assert search.typical_s < prefetch_module.WORTH_S


def test_a_failed_lookup_leaves_no_older_answer_behind(real_redis: redis.Redis) -> None:
    search = Search()
    ahead = LookupPrefetch(JobStore(real_redis), _slow(search))
    job_id = _admit(real_redis, "order-twice")
    ahead.submit(job_id)
    wait_for(lambda: job_id not in ahead._unanswered, 5, "the first answer")
    search.fail = True
    ahead.submit(job_id)
    assert ahead.take(job_id, wait_s=5) is None


def test_no_thread_no_wait(real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lookahead that cannot run (its thread would not start, or died) makes no create
    wait: each looks up for itself."""
    ahead = LookupPrefetch(JobStore(real_redis), _slow(Search()))

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    job_id = _admit(real_redis, "order-nothread")
    with pytest.raises(RuntimeError):
        ahead.submit(job_id)
    began = time.monotonic()
    assert ahead.take(job_id, wait_s=5) is None
    assert time.monotonic() - began < 1


def test_off_unless_every_create_looks_up(real_redis: redis.Redis) -> None:
    search = Search()
    ahead = LookupPrefetch(JobStore(real_redis), _slow(search), enabled=False)  # after_doubt
    job_id = _admit(real_redis, "order-off")
    ahead.submit(job_id)
    assert ahead.take(job_id, wait_s=5) is None and search.calls == []
