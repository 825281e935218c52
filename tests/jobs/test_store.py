"""The job store's scripts on a real Redis (they ask the server who it is: INFO)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from cardload.jobs import (
    CardLoadJob,
    ErrorInfo,
    FenceLost,
    HistoryEntry,
    IdempotencyConflict,
    JobStatus,
    JobStore,
    LoadResult,
    keys,
)
from cardload.jobs.leases import LeaseKeeper
from cardload.jobs.store import Announcement, Claimed, NotClaimed
from tests.services import redis_server, wait_for

CARD = "9276004424644352"
LEASE_MS = 10_000


def job(key: str = "k", cents: int = 2000, **kw: Any) -> CardLoadJob:
    return CardLoadJob.model_validate(
        {"idempotency_key": key, "card_number": CARD, "amount_cents": cents} | kw
    )


@pytest.fixture
def store(real_redis: redis.Redis) -> JobStore:
    return JobStore(real_redis, stream="ev", dead_letters="dlq")


def claim(store: JobStore, job_id: str, step: Any = "create", lease_ms: int = LEASE_MS) -> Any:
    return store.claim(job_id, step, lease_ms=lease_ms, max_attempts=3)


def claimed(
    store: JobStore, job_id: str, step: Any = "create", lease_ms: int = LEASE_MS
) -> Claimed:
    result = claim(store, job_id, step, lease_ms)
    assert isinstance(result, Claimed), result
    return result


def created(store: JobStore, job_id: str, tx: str = "STX_1") -> None:
    c = claimed(store, job_id)
    store.finish_step(
        c.lease,
        HistoryEntry(status=JobStatus.CREATED, step="create"),
        {"status": "created", "transaction_id": tx},
    )


RESULT = LoadResult(
    transaction_id="STX_1", status="ok", cash_cents=1, bonus_cents=0, total_cents=1, receipt=[]
)


def event(job_id: str, outcome: str = "succeeded") -> Announcement:
    return Announcement(f"{job_id}:{outcome}", f"card_load.{outcome}", json.dumps({"j": job_id}))


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
    assert not record.reconcile  # admitted by this very server


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


def test_claims_count_attempts_and_keep_history(store: JobStore) -> None:
    j = job()
    store.admit(j)
    first = claimed(store, j.job_id)
    assert (first.attempt, first.previous, first.took_over) == (1, JobStatus.QUEUED, False)
    assert first.record.status is JobStatus.CREATING and first.record.attempts == {"create": 1}
    locked = claim(store, j.job_id)
    assert locked.reason == "locked" and 9_000 < locked.locked_ms <= LEASE_MS
    store.finish_step(
        first.lease,
        HistoryEntry(status=JobStatus.CREATING, step="create", note="retry"),
    )
    second = claimed(store, j.job_id)
    assert (second.attempt, second.previous) == (2, JobStatus.CREATING)
    assert second.lease.fence != first.lease.fence
    assert int(second.lease.fence.split("-")[0]) == int(first.lease.fence.split("-")[0]) + 1
    store.finish_step(
        second.lease,
        HistoryEntry(status=JobStatus.CREATED, step="create"),
        {"status": "created", "transaction_id": "STX_1"},
    )
    assert claim(store, j.job_id) == NotClaimed("proceed", "created")  # create: go to start
    start = claimed(store, j.job_id, "start")
    assert claim(store, j.job_id) == NotClaimed("busy", "starting")  # create: start has it
    store.succeed(start.lease, RESULT, HistoryEntry(status=JobStatus.SUCCEEDED), event(j.job_id))
    assert claim(store, j.job_id, "start") == NotClaimed("finished", "succeeded")
    record = store.load(j.job_id)
    assert record is not None and record.status is JobStatus.SUCCEEDED and record.done
    assert record.transaction_id == "STX_1"
    assert record.attempts == {"create": 2, "start": 1}
    assert [(h.status.value, h.attempt) for h in record.history] == [
        ("queued", None),
        ("creating", 1),
        ("creating", None),
        ("creating", 2),
        ("created", None),
        ("starting", 1),
        ("succeeded", None),
    ]
    assert store.redis.zcard(keys.ACTIVE) == 0  # finished jobs leave the stall watch
    assert not store.redis.hexists(keys.job(j.job_id), "lock")


def test_a_start_without_a_transaction_goes_to_create(store: JobStore) -> None:
    j = job()
    store.admit(j)
    assert claim(store, j.job_id, "start") == NotClaimed("redirect", "queued")
    claimed(store, j.job_id)
    assert claim(store, j.job_id, "start") == NotClaimed("busy", "creating")
    assert claim(store, "nope") == NotClaimed("missing")


def test_a_write_after_a_takeover_is_refused(store: JobStore) -> None:
    j = job()
    store.admit(j)
    stale = claimed(store, j.job_id, lease_ms=50)

    # The holder froze past its lease; the next delivery takes the job over.
    def take_over() -> Claimed | None:
        result = claim(store, j.job_id)
        return result if isinstance(result, Claimed) else None

    fresh = wait_for(take_over, 5, "the lease to run out")
    assert fresh.took_over and fresh.attempt == 2
    with pytest.raises(FenceLost) as refused:
        store.finish_step(
            stale.lease,
            HistoryEntry(status=JobStatus.CREATED),
            {"status": "created", "transaction_id": "STX_STALE"},
        )
    assert refused.value.holder == fresh.lease.fence
    with pytest.raises(FenceLost):
        store.succeed(stale.lease, RESULT, HistoryEntry(status=JobStatus.SUCCEEDED), event("x"))
    assert store.renew([stale.lease, fresh.lease], LEASE_MS) == [False, True]
    assert not store.release(stale.lease)
    record = store.load(j.job_id)
    assert record is not None and record.transaction_id is None  # nothing of the stale one
    assert record.status is JobStatus.CREATING and store.redis.xlen("ev") == 0
    assert store.release(fresh.lease)
    assert isinstance(claim(store, j.job_id), Claimed)  # free again at once


def test_a_start_claim_writes_ahead_that_a_start_may_be_sent(store: JobStore) -> None:
    j = job()
    store.admit(j)
    created(store, j.job_id)
    first = claimed(store, j.job_id, "start")
    assert not first.unsettled_before
    assert (r := store.load(j.job_id)) is not None and r.load_uncertain  # before any POST
    store.finish_step(first.lease, HistoryEntry(status=JobStatus.STARTING), {"start_unsettled": 1})
    second = claimed(store, j.job_id, "start")
    assert second.unsettled_before
    store.finish_step(second.lease, HistoryEntry(status=JobStatus.STARTING), {"start_unsettled": 0})
    assert (r := store.load(j.job_id)) is not None and not r.load_uncertain


def test_another_server_means_doubt(store: JobStore) -> None:
    """A record last written by another Redis (restored from a snapshot, or a replica
    that took over) may have lost writes: the claim marks it for reconciliation."""
    j = job()
    store.admit(j)
    store.redis.hset(keys.job(j.job_id), "epoch", "f" * 40)  # as a restored copy would hold
    first = claimed(store, j.job_id)
    assert first.attempt == 1 and first.record.reconcile
    store.release(first.lease)
    assert claimed(store, j.job_id).record.reconcile  # stays until a step settles it


def test_fences_name_the_server_that_gave_them(store: JobStore) -> None:
    """A Redis restored from a snapshot counts fences from an older value again; its
    tokens still differ from the old server's, so a pre-crash holder stays fenced out."""
    j = job()
    store.admit(j)
    fence = claimed(store, j.job_id).lease.fence
    counter, run_id, _ = fence.split("-")
    server: Any = store.redis.info("server")
    assert (counter, run_id) == ("1", server["run_id"])


def test_a_server_that_hides_info_means_doubt_every_time() -> None:
    """Where INFO is disabled, the server cannot be recognised: every claim doubts."""
    with redis_server("--rename-command", "INFO", "") as url:
        client = redis.Redis.from_url(url)
        store = JobStore(client)
        j = job()
        store.admit(j)
        assert claimed(store, j.job_id).record.reconcile
        client.close()


def test_success_and_its_event_are_one_write(store: JobStore) -> None:
    j = job()
    store.admit(j)
    created(store, j.job_id)
    start = claimed(store, j.job_id, "start")
    store.succeed(start.lease, RESULT, HistoryEntry(status=JobStatus.SUCCEEDED), event(j.job_id))
    entries: Any = store.redis.xrange("ev")
    [(_, fields)] = entries
    assert fields[b"event_id"] == f"{j.job_id}:succeeded".encode()
    assert fields[b"type"] == b"card_load.succeeded"
    record = store.load(j.job_id)
    assert record is not None and record.result == RESULT and record.done
    # cardload 0.1's publish step for the same job adds nothing: the event is out.
    assert store.announce(j.job_id, event(j.job_id))
    assert store.redis.xlen("ev") == 1


def test_announce_adds_a_missing_success_event_once(store: JobStore) -> None:
    """A job that succeeded under cardload 0.1 before its publish step ran."""
    j = job()
    store.admit(j)
    store.redis.hset(keys.job(j.job_id), mapping={"status": "succeeded"})
    assert store.announce(j.job_id, event(j.job_id))
    assert store.announce(j.job_id, event(j.job_id))
    assert store.redis.xlen("ev") == 1
    queued = job("q")
    store.admit(queued)
    assert not store.announce(queued.job_id, event(queued.job_id))  # only succeeded jobs
    assert not store.announce("nope", event("nope"))
    assert store.redis.xlen("ev") == 1


def test_dead_letter_and_reopen(store: JobStore) -> None:
    j = job()
    store.admit(j)
    created(store, j.job_id)
    start = claimed(store, j.job_id, "start")
    error = ErrorInfo(kind="ambiguous", message="POST sent, response lost")
    store.dead_letter(
        start.lease,
        error=error,
        load_uncertain=True,
        letter='{"letter": 1}',
        entry=HistoryEntry(status=JobStatus.DEAD_LETTERED, error=error),
        event=event(j.job_id, "failed"),
    )
    record = store.load(j.job_id)
    assert record is not None and record.status is JobStatus.DEAD_LETTERED and record.done
    assert record.error == error and record.load_uncertain
    assert store.redis.get(keys.dead_letter("dlq", j.job_id)) == b'{"letter": 1}'
    assert store.redis.zrange("dlq", 0, -1) == [j.job_id.encode()]
    assert store.redis.xlen("ev") == 1
    assert store.reopen(j.job_id) and not store.reopen(j.job_id)
    record = store.load(j.job_id)
    assert record is not None and record.status is JobStatus.QUEUED and record.reconcile
    assert record.generation == 1 and record.attempts == {} and record.transaction_id == "STX_1"
    assert store.redis.zcard("dlq") == 0 and store.redis.zcard(keys.ACTIVE) == 1


def test_lease_keeper_renews_and_notices_a_takeover(store: JobStore) -> None:
    j = job()
    store.admit(j)
    held = claimed(store, j.job_id, lease_ms=1000)
    keeper = LeaseKeeper(store, lease_ms=1000, max_hold_s=60)
    keeper.hold(held.lease)
    try:
        keeper.renew_all()
        assert 900 < claim(store, j.job_id).locked_ms <= 1000
        store.redis.hset(keys.job(j.job_id), "lock", "9-x-1")  # another delivery's fence
        keeper.renew_all()
        assert keeper.lost(held.lease)
    finally:
        keeper.stop()
        keeper.drop(held.lease)
    assert not keeper.lost(held.lease)


def test_lease_keeper_gives_up_on_a_step_that_overran(store: JobStore) -> None:
    j = job()
    store.admit(j)
    held = claimed(store, j.job_id, lease_ms=1000)
    clock = iter([0.0, 100.0]).__next__
    keeper = LeaseKeeper(store, lease_ms=60_000, max_hold_s=30, clock=clock)
    keeper.hold(held.lease)
    keeper.renew_all()  # 100 s after the claim: not renewed, the lease runs out
    keeper.stop()
    assert claim(store, j.job_id).locked_ms <= 1000


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
        {"job_id": "9276004424644352"},  # ids are ours: random hex, never a card number
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


def test_a_record_read_twice_shares_nothing_that_can_be_changed(store: JobStore) -> None:
    """Specs are parsed once per process; a job whose contact (a wire model) or lines
    could be changed in place is handed out fresh each time."""
    contact = {"forename": "Max", "surname": "Muster", "email": "max@example.com"}
    with_contact = store.admit(job("contact", customer_contact=contact)).job_id
    first = store.load(with_contact)
    assert first is not None and first.job.customer_contact is not None
    first.job.customer_contact.forename = "changed"
    again = store.load(with_contact)
    assert again is not None and again.job.customer_contact is not None
    assert again.job.customer_contact.forename == "Max"
    plain = store.admit(job("plain")).job_id
    one, two = store.load(plain), store.load(plain)
    assert one is not None and two is not None and one.job == two.job


def test_a_queued_job_keeps_redis_compact_and_reads_back_whole(
    store: JobStore, real_redis: redis.Redis
) -> None:
    """The spec in pieces of at most 64 bytes, cut between characters: the hash stays in
    Redis's compact encoding, and what is read back is the job that was admitted."""
    description = "Prämie für Müller " + "€🎁" * 40  # multi-byte characters across cuts
    admitted = job("compact", description=description, source={"batch_id": "b", "row": 7})
    job_id = store.admit(admitted).job_id
    assert real_redis.object("encoding", f"cardload:job:{job_id}") == b"listpack"
    fields: Any = real_redis.hgetall(f"cardload:job:{job_id}")
    assert len(fields) > 10 and all(len(v) <= 64 for v in fields.values())
    assert not real_redis.exists(f"cardload:job:{job_id}:history")  # nothing to say yet
    record = store.load(job_id)
    assert record is not None and record.job == admitted
    assert [(h.status, h.note) for h in record.history] == [(JobStatus.QUEUED, "accepted")]
    assert not {b"updated_at", b"generation"} & set(fields)  # not until they change
    assert record.updated_at == record.enqueued_at and record.generation == 0
    taken = claimed(store, job_id)
    assert taken.record.job == admitted


def test_a_record_an_earlier_version_wrote_reads_the_same(
    store: JobStore, real_redis: redis.Redis
) -> None:
    """cardload 0.2 kept the spec whole in ``job`` and stored the admission's entry."""
    old = job("written-by-0.2")
    accepted = HistoryEntry(at=old.created_at, status=JobStatus.QUEUED, note="accepted")
    real_redis.set(f"cardload:idem:{old.idempotency_key}", f"{old.job_id} {old.fingerprint()}")
    real_redis.hset(
        f"cardload:job:{old.job_id}",
        mapping={
            "job": old.model_dump_json(),
            "fingerprint": old.fingerprint(),
            "status": "queued",
            "generation": 0,
            "enqueued_at": old.created_at.isoformat(),
            "updated_at": old.created_at.isoformat(),
            "dispatched": 1,
            "epoch": "",
        },
    )
    real_redis.rpush(
        f"cardload:job:{old.job_id}:history", accepted.model_dump_json(exclude_none=True)
    )
    record = store.load(old.job_id)
    assert record is not None and record.job == old
    assert [(h.status, h.note) for h in record.history] == [(JobStatus.QUEUED, "accepted")]
    assert store.admit(old).job_id == old.job_id  # the same load, found by its key
    assert claimed(store, old.job_id).record.job == old


def test_a_long_basket_is_admitted_whole(store: JobStore, real_redis: redis.Redis) -> None:
    """Past a hundred pieces the spec stays in one field, as 0.2 wrote it: Lua's unpack
    would refuse thousands of them."""
    lines = [
        {"ean": "4000000000001", "desc": f"Zusatzposten {i:05d} " + "x" * 20, "price_one_cents": 1}
        for i in range(6000)
    ]
    big = job("long-basket", extra_lines=lines)
    job_id = store.admit(big).job_id
    assert real_redis.hexists(f"cardload:job:{job_id}", "job")
    record = store.load(job_id)
    assert record is not None and record.job == big
    assert store.admit(big).job_id == job_id


def test_every_script_is_loaded_at_once(store: JobStore, real_redis: redis.Redis) -> None:
    real_redis.script_flush()
    shas = [script.sha for script in store._scripts]
    assert len(shas) == 14 and not any(real_redis.script_exists(*shas))
    store.load_scripts()
    assert all(real_redis.script_exists(*shas))
