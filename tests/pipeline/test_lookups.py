"""merchantRef lookups of concurrent creates share a search, and none is answered by a
search sent before it asked."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
import redis

from cardload.jobs import CardLoadJob
from cardload.pipeline import Continue
from cardload.pipeline.lookups import MAX_KEYS, MerchantRefLookups
from cardload.pipeline.request import build_create_request
from cardload.pipeline.runtime import build_pipeline
from cardload.sandbox import GIFT_CARD, SandboxApp, SandboxTransport
from cardload.secuconnect import (
    PermanentError,
    RateLimitedError,
    RetryableError,
    SecuconnectClient,
    SecuconnectError,
    SmartTransaction,
)
from tests.support import make_settings


class SlowSearch:
    """Answers each key with one made-up transaction, after ``delay_s``; records which
    keys each search carried and fails the searches whose number is in ``fail``."""

    def __init__(self, delay_s: float = 0.05, fail: frozenset[int] = frozenset()) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.searches: list[list[str]] = []
        self.lock = threading.Lock()

    def started(self) -> int:
        with self.lock:
            return len(self.searches)

    def __call__(self, keys: Sequence[str]) -> dict[str, list[SmartTransaction]]:
        with self.lock:
            self.searches.append(list(keys))
            number = len(self.searches)
        time.sleep(self.delay_s)
        if number in self.fail:
            raise RetryableError(f"search {number} failed")
        # Not validated: made-up ids, read back as they were put.
        return {
            key: [SmartTransaction.model_construct(id=f"STX_{key}", status="created")]
            for key in keys
        }


def _ask_at_once(
    lookups: MerchantRefLookups, search: SlowSearch, keys: list[str]
) -> dict[str, dict[str, Any]]:
    asked: dict[str, int] = {}
    got: dict[str, Any] = {}

    def ask(key: str) -> None:
        asked[key] = search.started()
        try:
            got[key] = [tx.id for tx in lookups.find(key)]
        except SecuconnectError as exc:
            got[key] = exc

    threads = [threading.Thread(target=ask, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return {"asked": asked, "got": got}


def test_keys_asked_during_a_search_go_together_in_the_next() -> None:
    search = SlowSearch()
    lookups = MerchantRefLookups(search)
    keys = [f"order-{i}" for i in range(30)]
    result = _ask_at_once(lookups, search, keys)
    assert result["got"] == {key: [f"STX_{key}"] for key in keys}
    assert len(search.searches) < len(keys) / 3  # grouped
    assert sorted(k for batch in search.searches for k in batch) == sorted(keys)  # once each
    assert max(len(batch) for batch in search.searches) <= MAX_KEYS
    for number, batch in enumerate(search.searches, start=1):
        for key in batch:
            # Sent after the key was asked for: as fresh as a lookup of its own.
            assert number > result["asked"][key]


def test_one_at_a_time_each_key_is_its_own_search_without_waiting() -> None:
    search = SlowSearch(delay_s=0)
    lookups = MerchantRefLookups(search)
    for i in range(3):
        assert [tx.id for tx in lookups.find(f"k{i}")] == [f"STX_k{i}"]
    assert search.searches == [["k0"], ["k1"], ["k2"]]


def test_a_failed_search_fails_only_its_own_callers() -> None:
    search = SlowSearch(fail=frozenset({2}))
    lookups = MerchantRefLookups(search)
    keys = [f"order-{i}" for i in range(12)]
    got = _ask_at_once(lookups, search, keys)["got"]
    failed = set(search.searches[1])
    assert failed
    for key in keys:
        if key in failed:
            assert isinstance(got[key], RetryableError)
            assert str(got[key]) == "search 2 failed"
        else:
            assert got[key] == [f"STX_{key}"]
    assert [tx.id for tx in lookups.find("after")] == ["STX_after"]


def test_a_key_with_wildcards_is_searched_alone() -> None:
    search = SlowSearch()
    lookups = MerchantRefLookups(search)
    keys = ["a*b", "c?d", "plain-1", "plain-2", "plain-3"]
    _ask_at_once(lookups, search, keys)
    assert ["a*b"] in search.searches and ["c?d"] in search.searches
    assert all(len(batch) == 1 for batch in search.searches if "a*b" in batch or "c?d" in batch)


def test_one_search_answers_each_key_exactly(client: SecuconnectClient, app: SandboxApp) -> None:
    settings = make_settings("redis://unused", "http://sandbox.test")
    keys = ['order-"1"', "order-\\2", "order-3", "order-30", "order-3?"]
    made: dict[str, str] = {}
    for key in keys[:3]:
        job = CardLoadJob(idempotency_key=key, card_number=GIFT_CARD, amount_cents=100)
        secu = settings.secuconnect
        assert secu.contract_id and secu.device_id
        request = build_create_request(job, contract_id=secu.contract_id, device_id=secu.device_id)
        made[key] = client.create(request).id
    found = client.find_by_merchant_refs(["order-3", 'order-"1"', "order-\\2", "nothing"])
    assert {key: [tx.id for tx in txs] for key, txs in found.items()} == {
        "order-3": [made["order-3"]],
        'order-"1"': [made['order-"1"']],
        "order-\\2": [made["order-\\2"]],
        "nothing": [],
    }


def test_concurrent_creates_adopt_only_their_own_lost_transactions(
    app: SandboxApp, real_redis: redis.Redis
) -> None:
    """Ten jobs whose create answers were lost (their transactions exist) and ten new
    ones, their creates at once: each lost one adopts its own, each new one creates, in
    fewer searches than jobs."""
    settings = make_settings("redis://unused", "http://sandbox.test")
    transport = SandboxTransport(app, sleep=lambda _: None)
    pipeline = build_pipeline(settings, client=real_redis, transport=transport)
    secu = settings.secuconnect
    assert secu.contract_id and secu.device_id
    jobs, lost = [], {}
    for i in range(20):
        job = CardLoadJob(idempotency_key=f"batch-{i}", card_number=GIFT_CARD, amount_cents=100 + i)
        jobs.append(pipeline.store.admit(job).job_id)
        if i % 2 == 0:  # created at the API, the answer lost
            request = build_create_request(
                job, contract_id=secu.contract_id, device_id=secu.device_id
            )
            lost[jobs[-1]] = pipeline.client.create(request).id
    searches_before = app.requests["list"]
    outcomes: dict[str, object] = {}
    threads = [
        threading.Thread(target=lambda j=job_id: outcomes.__setitem__(j, pipeline.create(j)))
        for job_id in jobs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert all(isinstance(outcome, Continue) for outcome in outcomes.values()), outcomes
        records = {job_id: pipeline.store.load(job_id) for job_id in jobs}
        for job_id, tx_id in lost.items():
            record = records[job_id]
            assert record is not None and record.transaction_id == tx_id
        tx_ids = {r.transaction_id for r in records.values() if r is not None}
        assert len(tx_ids) == 20  # one each, none shared, none made twice
        searches = app.requests["list"] - searches_before
        assert 1 <= searches <= 20
    finally:
        pipeline.leases.stop()
        pipeline.client.close()


def test_a_key_the_api_refuses_fails_alone_not_its_whole_search() -> None:
    """One key matching too much (or refused) is a PermanentError: the others of its
    search are looked up again alone, and only its own caller sees the refusal."""

    class Picky(SlowSearch):
        def __call__(self, keys: Sequence[str]) -> dict[str, list[SmartTransaction]]:
            if "hot" in keys:
                with self.lock:
                    self.searches.append(list(keys))
                time.sleep(self.delay_s)
                raise PermanentError("merchantRef 'hot' matches 2001 transactions")
            return super().__call__(keys)

    search = Picky()
    lookups = MerchantRefLookups(search)
    keys = ["first", "hot", "order-1", "order-2", "order-3"]
    got = _ask_at_once(lookups, search, keys)["got"]
    assert isinstance(got["hot"], PermanentError)
    assert {key: got[key] for key in keys if key != "hot"} == {
        key: [f"STX_{key}"] for key in keys if key != "hot"
    }


def test_each_caller_raises_its_own_copy_of_a_shared_failure() -> None:
    error = RateLimitedError("search answered 429", retry_after_s=7.0)
    error.__cause__ = ValueError("cause")

    def search(keys: Sequence[str]) -> dict[str, list[SmartTransaction]]:
        raise error

    lookups = MerchantRefLookups(search)
    raised = []
    for key in ("a", "b"):
        with pytest.raises(RateLimitedError) as caught:
            lookups.find(key)
        raised.append(caught.value)
    assert raised[0] is not raised[1] and error not in raised
    assert all(r.retry_after_s == 7.0 and str(r) == str(error) for r in raised)
    assert all(isinstance(r.__cause__, ValueError) for r in raised)
