"""The job store's scripts, on fakeredis (with Lua) for speed."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from jobs import CardLoadJob, HistoryEntry, IdempotencyConflict, JobStatus, JobStore, keys

CARD = "9276004424644352"


def job(key: str = "k", cents: int = 2000, **kw: Any) -> CardLoadJob:
    return CardLoadJob.model_validate(
        {"idempotency_key": key, "card_number": CARD, "amount_cents": cents} | kw
    )


@pytest.fixture
def store(fake_redis: fakeredis.FakeRedis) -> JobStore:
    return JobStore(fake_redis)


def test_admission_is_idempotent_by_key(store: JobStore) -> None:
    first = job()
    assert store.admit(first).created
    again = store.admit(job())  # a new job object, same key and content
    assert (again.job_id, again.created) == (first.job_id, False)
    assert store.job_id_for_key("k") == first.job_id
    with pytest.raises(IdempotencyConflict, match="already used by job"):
        store.admit(job(cents=2001))
    record = store.load(first.job_id)
    assert record is not None and record.status is JobStatus.QUEUED and record.job == first


def test_source_and_identity_do_not_count_as_content(store: JobStore) -> None:
    first = job(source={"batch_id": "a", "row": 1})
    store.admit(first)
    assert store.admit(job(source={"batch_id": "b", "row": 9})).job_id == first.job_id


def test_admit_many_reports_each(store: JobStore) -> None:
    jobs = [job(f"k{i}") for i in range(1200)] + [job("k5", cents=1)]
    results = store.admit_many(jobs)
    assert sum(1 for r in results if not isinstance(r, IdempotencyConflict) and r.created) == 1200
    assert isinstance(results[-1], IdempotencyConflict)
    assert store.redis.zcard(keys.ACTIVE) == 1200


def test_transitions_count_attempts_and_keep_history(store: JobStore) -> None:
    j = job()
    store.admit(j)
    first = store.transition(
        j.job_id,
        allowed=[JobStatus.QUEUED, JobStatus.CREATING],
        to=JobStatus.CREATING,
        count_attempt_of="create",
    )
    second = store.transition(
        j.job_id,
        allowed=[JobStatus.QUEUED, JobStatus.CREATING],
        to=JobStatus.CREATING,
        count_attempt_of="create",
    )
    assert (first.previous, first.attempt, second.previous, second.attempt) == (
        "queued",
        1,
        "creating",
        2,
    )
    refused = store.transition(j.job_id, allowed=[JobStatus.CREATED], to=JobStatus.STARTING)
    assert not refused.applied and refused.previous == "creating"
    store.transition(
        j.job_id,
        allowed=[JobStatus.CREATING],
        to=JobStatus.CREATED,
        fields={"transaction_id": "STX_1"},
    )
    store.transition(j.job_id, allowed=None, to=JobStatus.SUCCEEDED)
    assert not store.transition(
        j.job_id, allowed=None, to=JobStatus.DEAD_LETTERED
    ).applied  # terminal stays
    record = store.load(j.job_id)
    assert record is not None
    assert record.transaction_id == "STX_1" and record.attempts == {"create": 2}
    assert [(h.status.value, h.attempt) for h in record.history] == [
        ("queued", None),
        ("creating", 1),
        ("creating", 2),
        ("created", None),
        ("succeeded", None),
    ]
    assert store.redis.zcard(keys.ACTIVE) == 0  # finished jobs leave the stall watch


def test_missing_job(store: JobStore) -> None:
    assert store.load("nope") is None
    assert store.transition("nope", allowed=None, to=JobStatus.CREATING).previous == "missing"


def test_lock_is_exclusive_and_released_only_by_its_holder(store: JobStore) -> None:
    token = store.acquire("j", 10_000)
    assert token and store.acquire("j", 10_000) is None
    assert 9_000 < store.lock_ttl_ms("j") <= 10_000
    store.release("j", "someone-else")
    assert store.acquire("j", 10_000) is None
    store.release("j", token)
    assert store.acquire("j", 10_000)


def test_stalled_jobs_and_recording_progress(store: JobStore) -> None:
    j = job()
    store.admit(j)
    record = store.load(j.job_id)
    assert record is not None
    cutoff = record.updated_at.timestamp() + 1
    assert store.stalled(cutoff) == [j.job_id]
    store.record(j.job_id, HistoryEntry(status=JobStatus.QUEUED, note="poke"))
    assert store.stalled(record.updated_at.timestamp() - 1) == []


def test_dispatch_flags(store: JobStore) -> None:
    a, b = job("a"), job("b")
    store.admit_many([a, b])
    store.mark_dispatched([a.job_id])
    assert store.dispatched_many([a.job_id, b.job_id]) == {a.job_id: True, b.job_id: False}


@pytest.mark.parametrize(
    "fields",
    [
        {"card_number": None},
        {"card_group_id": "CRG_GO7GQ6DHW3TJYGDF64WD16PUIDHQ8Y"},
        {"amount_cents": 0},
        {"amount_cents": 20.0},
        {"card_number": "1234"},
        {"idempotency_key": ""},
        {"currency": "USD"},
        {
            "customer_id": "PCU_H8ZQSFS9G2X07TF5JF89V55H645UA2",
            "customer_contact": {"forename": "X"},
        },
    ],
)
def test_job_model_refuses(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        job(**fields)


def test_default_description_like_the_seed() -> None:
    assert job().article_description == "Kartenaufladung 20 EUR"
    assert job(cents=1250).article_description == "Kartenaufladung 12,50 EUR"
