"""A create's lookup made while its message waits: used on a first attempt only, ready
when the create runs (or waited for once sent, taken back while still gathering), and
never taken for a job that has a transaction, a key with wildcards, or an answer too
old."""

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
from cardload.pipeline.lookups import MAX_KEYS
from cardload.pipeline.prefetch import LookupPrefetch
from cardload.pipeline.request import build_create_request
from cardload.pipeline.runtime import build_pipeline
from cardload.sandbox import GIFT_CARD, SandboxApp, SandboxTransport
from cardload.secuconnect import RetryableError, SmartTransaction
from tests.services import wait_for
from tests.support import make_settings


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


def _sent(ahead: LookupPrefetch, *job_ids: str) -> None:
    """Wait until the keys have left the gathering (their search is sent)."""
    wait_for(lambda: not any(j in ahead._gathering for j in job_ids), 5, "the search sent")


def _answered(ahead: LookupPrefetch, *job_ids: str) -> None:
    _sent(ahead, *job_ids)
    wait_for(lambda: not any(j in ahead._in_flight for j in job_ids), 5, "the answer")


def _admit(real_redis: redis.Redis, key: str) -> str:
    job = CardLoadJob(idempotency_key=key, card_number=GIFT_CARD, amount_cents=100)
    return JobStore(real_redis).admit(job).job_id


def test_an_answer_looked_up_ahead_is_given_once(real_redis: redis.Redis) -> None:
    search = Search(delay_s=0.2)
    ahead = LookupPrefetch(JobStore(real_redis), search)
    ids = [_admit(real_redis, f"order-{i}") for i in range(5)]
    for job_id in ids:
        ahead.submit(job_id)
    _sent(ahead, *ids)
    # Taken while the search is under way: waited for, not looked up twice.
    assert [tx.id for tx in ahead.take(ids[0], wait_s=5) or []] == ["STX_order-0"]
    assert all(ahead.take(job_id, wait_s=5) for job_id in ids[1:])
    assert search.calls == [[f"order-{i}" for i in range(5)]]  # gathered: one search
    assert ahead.take(ids[0], wait_s=5) is None  # once
    assert ahead.take("never-submitted", wait_s=5) is None  # at once, no wait


def test_nothing_is_taken_after_a_failed_search_or_for_a_job_past_its_create(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JobStore(real_redis)
    failing = LookupPrefetch(store, Search(delay_s=0.2, fail=True))
    job_id = _admit(real_redis, "order-f")
    failing.submit(job_id)
    _sent(failing, job_id)
    assert failing.take(job_id, wait_s=5) is None

    search = Search()
    ahead = LookupPrefetch(store, search)
    created = _admit(real_redis, "order-c")
    real_redis.hset(keys.job(created), "transaction_id", "STX_" + "A" * 30)
    wild = _admit(real_redis, "order-*")
    for job in (created, wild):
        ahead.submit(job)
    _answered(ahead, created, wild)
    assert ahead.take(created, wait_s=5) is None and ahead.take(wild, wait_s=5) is None
    assert search.calls == []

    monkeypatch.setattr(prefetch_module, "MAX_AGE_S", 0.0)
    old = _admit(real_redis, "order-old")
    ahead.submit(old)
    _answered(ahead, old)
    assert ahead._found.get(old) is not None  # answered, but
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
    try:
        job = CardLoadJob(idempotency_key="ahead-1", card_number=GIFT_CARD, amount_cents=100)
        job_id = pipeline.store.admit(job).job_id
        pipeline.prefetch.submit(job_id)
        _sent(pipeline.prefetch, job_id)
        assert pipeline.prefetch.take(job_id, wait_s=5) == []  # nothing under the key yet
        pipeline.prefetch.submit(job_id)
        _answered(pipeline.prefetch, job_id)
        searches = app.requests["list"]
        assert isinstance(pipeline.create(job_id), Continue)
        assert app.requests["list"] == searches  # the lookahead's answer, no search of its own

        # A retry after an ambiguous create: the earlier attempt's transaction landed
        # after the lookahead ran; the retry ignores that answer and finds it.
        job2 = CardLoadJob(idempotency_key="ahead-2", card_number=GIFT_CARD, amount_cents=100)
        job2_id = pipeline.store.admit(job2).job_id
        pipeline.prefetch.submit(job2_id)
        pipeline.prefetch.submit(job2_id)
        # The lookahead answered "nothing" before the earlier attempt's create landed.
        _answered(pipeline.prefetch, job2_id)
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


def test_a_key_still_gathering_is_taken_back_at_once(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key gathering alone (the create runs as soon as its message arrives): the create
    looks up for itself at once instead of waiting for others to share the search, and
    its key leaves the batch; ``MAX_KEYS`` waiting keys go at once, without the gathering
    wait."""
    monkeypatch.setattr(prefetch_module, "GATHER_S", 30.0)
    search = Search()
    ahead = LookupPrefetch(JobStore(real_redis), search)
    alone = _admit(real_redis, "order-alone")
    ahead.submit(alone)
    began = time.monotonic()
    assert ahead.take(alone, wait_s=5) is None
    assert time.monotonic() - began < 1
    full = [_admit(real_redis, f"order-full-{i}") for i in range(MAX_KEYS)]
    for job_id in full:
        ahead.submit(job_id)
    _answered(ahead, *full)
    assert search.calls == [[f"order-full-{i}" for i in range(MAX_KEYS)]]
    assert all(ahead.take(job_id, wait_s=5) for job_id in full)


def test_a_key_gathering_with_others_waits_for_their_search(real_redis: redis.Redis) -> None:
    search = Search()
    ahead = LookupPrefetch(JobStore(real_redis), search)
    pair = [_admit(real_redis, f"order-pair-{i}") for i in range(2)]
    for job_id in pair:
        ahead.submit(job_id)
    # Taken at once, while both still gather: waited for, answered by one search.
    assert [tx.id for tx in ahead.take(pair[0], wait_s=5) or []] == ["STX_order-pair-0"]
    assert [tx.id for tx in ahead.take(pair[1], wait_s=5) or []] == ["STX_order-pair-1"]
    assert search.calls == [["order-pair-0", "order-pair-1"]]


def test_a_key_behind_a_slow_search_is_taken_back_after_the_grace(
    real_redis: redis.Redis,
) -> None:
    """One thread sends the searches: behind one that hangs (a slow API), a create does
    not wait for its own to be sent longer than ``GATHER_S + SEND_GRACE_S``."""
    search = Search(delay_s=2.0)
    ahead = LookupPrefetch(JobStore(real_redis), search)
    first = [_admit(real_redis, f"order-slow-{i}") for i in range(2)]
    for job_id in first:
        ahead.submit(job_id)
    _sent(ahead, *first)
    behind = [_admit(real_redis, f"order-behind-{i}") for i in range(2)]
    for job_id in behind:
        ahead.submit(job_id)
    began = time.monotonic()
    assert ahead.take(behind[0], wait_s=30) is None
    waited = time.monotonic() - began
    assert waited < prefetch_module.GATHER_S + prefetch_module.SEND_GRACE_S + 0.5
    _answered(ahead, behind[1])
    assert search.calls[1] == ["order-behind-1"]  # the key taken back is not searched


def test_an_answer_to_a_key_given_up_on_is_not_kept(real_redis: redis.Redis) -> None:
    """A create that stopped waiting looked up for itself (and may have created since):
    the search it gave up on, answering later, must not answer a later take."""
    search = Search(delay_s=0.5)
    ahead = LookupPrefetch(JobStore(real_redis), search)
    pair = [_admit(real_redis, f"order-late-{i}") for i in range(2)]
    for job_id in pair:
        ahead.submit(job_id)
    _sent(ahead, *pair)
    assert ahead.take(pair[0], wait_s=0.1) is None  # gave up
    _answered(ahead, *pair)
    assert pair[0] not in ahead._found and pair[1] in ahead._found
    assert ahead.take(pair[0], wait_s=5) is None


def test_a_failed_lookup_leaves_no_older_answer_behind(real_redis: redis.Redis) -> None:
    search = Search()
    ahead = LookupPrefetch(JobStore(real_redis), search)
    job_id = _admit(real_redis, "order-twice")
    ahead.submit(job_id)
    _answered(ahead, job_id)
    search.fail = True
    ahead.submit(job_id)
    _sent(ahead, job_id)
    assert ahead.take(job_id, wait_s=5) is None


def test_no_thread_no_wait(real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lookahead that cannot run (its thread would not start, or died) makes no create
    wait: each looks up for itself."""
    ahead = LookupPrefetch(JobStore(real_redis), Search())

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
    ahead = LookupPrefetch(JobStore(real_redis), search, enabled=False)  # after_doubt
    job_id = _admit(real_redis, "order-off")
    ahead.submit(job_id)
    assert ahead.take(job_id, wait_s=5) is None and search.calls == []
