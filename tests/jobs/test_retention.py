"""Retention on a real Redis (the scripts ask the server who it is): what a finished job
leaves expires, keys outlive records and still deduplicate, replays keep what they
reopen, the event stream is trimmed by age, and ``purge`` deletes only what it should."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from cardload.config import Settings, SettingsError, load_settings
from cardload.config.settings import RetentionSettings
from cardload.jobs import (
    CardLoadJob,
    ErrorInfo,
    HistoryEntry,
    IdempotencyConflict,
    JobStatus,
    JobStore,
    LoadResult,
    job_store,
    keys,
)
from cardload.jobs.retention import parse_duration, purge_finished
from cardload.jobs.store import Announcement, Claimed
from cardload.producers.enqueue import CardLoadProducer
from cardload.worker import create_app
from tests.services import wait_for
from tests.support import make_settings, queued

CARD = "9276004424644352"
DAY_S = 86_400
RESULT = LoadResult(
    transaction_id="STX_1", status="ok", cash_cents=1, bonus_cents=0, total_cents=1, receipt=[]
)


def job(key: str = "k", cents: int = 2000) -> CardLoadJob:
    return CardLoadJob.model_validate(
        {"idempotency_key": key, "card_number": CARD, "amount_cents": cents}
    )


def make_store(client: redis.Redis, **retention: Any) -> JobStore:
    return JobStore(client, stream="ev", dead_letters="dlq", **retention)


@pytest.fixture
def store(real_redis: redis.Redis) -> JobStore:
    return make_store(real_redis, jobs_retention_s=100, keys_retention_s=1000)


def event(job_id: str, outcome: str = "succeeded") -> Announcement:
    return Announcement(f"{job_id}:{outcome}", f"card_load.{outcome}", json.dumps({"j": job_id}))


def claimed(store: JobStore, job_id: str, step: Any = "create") -> Claimed:
    result = store.claim(job_id, step, lease_ms=10_000, max_attempts=3)
    assert isinstance(result, Claimed), result
    return result


def succeed(store: JobStore, job_id: str) -> None:
    c = claimed(store, job_id)
    store.finish_step(
        c.lease,
        HistoryEntry(status=JobStatus.CREATED, step="create"),
        {"status": "created", "transaction_id": "STX_1"},
    )
    start = claimed(store, job_id, "start")
    store.succeed(start.lease, RESULT, HistoryEntry(status=JobStatus.SUCCEEDED), event(job_id))


def dead_letter(store: JobStore, job_id: str) -> None:
    c = claimed(store, job_id)
    error = ErrorInfo(kind="permanent", message="card locked")
    store.dead_letter(
        c.lease,
        error=error,
        load_uncertain=False,
        letter='{"letter": 1}',
        entry=HistoryEntry(status=JobStatus.DEAD_LETTERED, error=error),
        event=event(job_id, "failed"),
    )


def ttls(client: redis.Redis, *names: str) -> list[int]:
    return [int(client.pttl(name)) for name in names]


def job_keys(j: CardLoadJob) -> tuple[str, str, str]:
    return keys.job(j.job_id), keys.history(j.job_id), keys.idempotency(j.idempotency_key)


def test_success_gives_record_history_and_key_their_expiry(
    store: JobStore, real_redis: redis.Redis
) -> None:
    j = job()
    store.admit(j)
    c = claimed(store, j.job_id)
    record, history, key = job_keys(j)
    assert ttls(real_redis, record, history, key) == [-1, -1, -1]  # running: kept
    store.release(c.lease)
    succeed(store, j.job_id)
    record_ttl, history_ttl, key_ttl = ttls(real_redis, record, history, key)
    assert 90_000 < record_ttl <= 100_000 and 90_000 < history_ttl <= 100_000
    assert 990_000 < key_ttl <= 1_000_000
    # The key's value stays as it was: the job and what it asked for.
    assert real_redis.get(key) == f"{j.job_id} {j.fingerprint()}".encode()


@pytest.mark.parametrize("key", ['Bestellung "Müller" \\ 4711 €🎁', "x" * 255])
def test_the_script_finds_any_key_in_the_spec(
    store: JobStore, real_redis: redis.Redis, key: str
) -> None:
    """The key is read back from the spec's JSON (escapes, characters cut across pieces)."""
    j = job(key)
    store.admit(j)
    succeed(store, j.job_id)
    assert 990_000 < real_redis.pttl(keys.idempotency(key)) <= 1_000_000


def test_a_record_an_earlier_version_wrote_expires_with_its_key(
    store: JobStore, real_redis: redis.Redis
) -> None:
    """cardload 0.2 kept the spec whole in ``job``."""
    old = job("written-by-0.2")
    real_redis.set(keys.idempotency(old.idempotency_key), f"{old.job_id} {old.fingerprint()}")
    real_redis.hset(
        keys.job(old.job_id),
        mapping={
            "job": old.model_dump_json(),
            "fingerprint": old.fingerprint(),
            "status": "queued",
            "enqueued_at": old.created_at.isoformat(),
            "epoch": "",
        },
    )
    succeed(store, old.job_id)
    assert all(ttl > 0 for ttl in ttls(real_redis, *job_keys(old)))


def test_dead_letters_never_expire_by_themselves(store: JobStore, real_redis: redis.Redis) -> None:
    j = job()
    store.admit(j)
    dead_letter(store, j.job_id)
    entry = keys.dead_letter("dlq", j.job_id)
    assert ttls(real_redis, *job_keys(j), entry, "dlq") == [-1] * 5


def test_a_key_names_its_load_after_the_record_expired(
    real_redis: redis.Redis, redis_url: str
) -> None:
    """Inside the keys' period a resubmission is the same load, whose record is gone:
    admitted as a duplicate, no message sent, no record brought back as a stub."""
    settings: Settings = make_settings(redis_url, "http://127.0.0.1:9")
    store = make_store(real_redis, jobs_retention_s=1, keys_retention_s=60)
    producer = CardLoadProducer(create_app(settings), store, settings)
    j = job("order-1")
    [first] = producer.enqueue_many([j])
    assert not isinstance(first, IdempotencyConflict) and first.created
    assert len(queued(real_redis)) == 1
    succeed(store, j.job_id)
    record, history, key = job_keys(j)
    wait_for(lambda: not real_redis.exists(record, history), 10, "the succeeded record to expire")
    assert real_redis.exists(key) and 0 < real_redis.pttl(key) <= 60_000

    again = job("order-1")  # a new job object, the same key and content
    [result] = producer.enqueue_many([again])
    assert not isinstance(result, IdempotencyConflict)
    assert (result.job_id, result.created) == (j.job_id, False)
    assert len(queued(real_redis)) == 1  # nothing sent: it would load again, or find nothing
    assert not real_redis.exists(record, keys.job(again.job_id))  # no stub, no second job
    assert store.job_ids_for_keys(["order-1"]) == [j.job_id]
    assert store.load(j.job_id) is None
    with pytest.raises(IdempotencyConflict):
        store.admit(job("order-1", cents=1))  # the key still guards its content


def test_a_replay_takes_every_expiry_away(store: JobStore, real_redis: redis.Redis) -> None:
    """A record the replay reopens runs again: nothing of it may expire meanwhile (an
    expiry set by hand, or by a policy before this one)."""
    j = job()
    store.admit(j)
    dead_letter(store, j.job_id)
    names = job_keys(j)
    for name in names:
        real_redis.pexpire(name, 50_000)
    assert store.reopen(j.job_id)
    assert ttls(real_redis, *names) == [-1, -1, -1]
    record = store.load(j.job_id)
    assert record is not None and record.status is JobStatus.QUEUED


def test_a_replay_after_its_key_went_to_another_job_leaves_that_key(
    store: JobStore, real_redis: redis.Redis
) -> None:
    j = job()
    store.admit(j)
    dead_letter(store, j.job_id)
    real_redis.set(keys.idempotency("k"), "f" * 32 + " x", px=50_000)  # another job's now
    assert store.reopen(j.job_id)
    assert 0 < real_redis.pttl(keys.idempotency("k")) <= 50_000


def test_aliases_expire_with_the_job(store: JobStore, real_redis: redis.Redis) -> None:
    """``add_keys`` (a batch row re-keyed): the other key lasts as the job's own does."""
    j = job("ref:1")
    store.admit(j)
    store.add_keys([(job("batch:b:1"), j.job_id)])
    alias = keys.idempotency("batch:b:1")
    assert real_redis.pttl(alias) == -1 and real_redis.sismember(keys.aliases(j.job_id), alias)
    succeed(store, j.job_id)
    assert 990_000 < real_redis.pttl(alias) <= 1_000_000
    assert not real_redis.exists(keys.aliases(j.job_id))
    # Added once the job succeeded, or once its record is gone: an expiry at once.
    store.add_keys([(job("batch:b:2"), j.job_id)])
    real_redis.delete(keys.job(j.job_id))
    store.add_keys([(job("batch:b:3"), j.job_id)])
    for name in ("batch:b:2", "batch:b:3"):
        assert 990_000 < real_redis.pttl(keys.idempotency(name)) <= 1_000_000
    assert store.job_ids_for_keys(["batch:b:1", "batch:b:3"]) == [j.job_id, j.job_id]


def test_the_first_message_is_noted_only_on_a_record_that_exists(
    store: JobStore, real_redis: redis.Redis
) -> None:
    j = job()
    store.admit(j)
    store.mark_dispatched([j.job_id, "0" * 32])
    assert store.dispatched_many([j.job_id]) == {j.job_id: True}
    assert not real_redis.exists(keys.job("0" * 32))
    assert store.dispatched_many(["0" * 32]) == {"0" * 32: True}  # gone: nothing to send


def test_the_stream_is_trimmed_by_age(real_redis: redis.Redis) -> None:
    """Nodes of entries older than the events' period go with the next event; with '~'
    Redis drops whole nodes (100 entries each by default), never part of one."""
    store = make_store(real_redis, events_retention_s=60)
    for i in range(1, 251):  # entries from long ago (ids are milliseconds)
        real_redis.xadd("ev", {"event_id": f"old-{i}"}, id=f"1000-{i}")
    j = job()
    store.admit(j)
    succeed(store, j.job_id)
    assert real_redis.xlen("ev") == 51  # two full nodes of old entries went
    entries: Any = real_redis.xrange("ev")
    assert entries[-1][1][b"event_id"] == f"{j.job_id}:succeeded".encode()
    assert int(entries[0][0].split(b"-")[0]) == 1000  # the rest of the last node stays


def test_the_stream_is_still_trimmed_by_length(real_redis: redis.Redis) -> None:
    store = JobStore(real_redis, stream="ev", dead_letters="dlq", stream_maxlen=100)
    for i in range(300):
        real_redis.xadd("ev", {"event_id": f"recent-{i}"})
    j = job()
    store.admit(j)
    succeed(store, j.job_id)
    assert 100 <= real_redis.xlen("ev") <= 200


def test_an_entry_younger_than_the_period_stays(store: JobStore, real_redis: redis.Redis) -> None:
    for i in range(250):
        real_redis.xadd("ev", {"event_id": f"recent-{i}"})
    j = job()
    store.admit(j)
    succeed(store, j.job_id)
    assert real_redis.xlen("ev") == 251


def test_the_periods_come_from_the_settings(
    monkeypatch: pytest.MonkeyPatch, real_redis: redis.Redis
) -> None:
    monkeypatch.setenv("CARDLOAD_RETENTION_JOBS_S", "3600")
    monkeypatch.setenv("CARDLOAD_RETENTION_KEYS_S", "7200")
    monkeypatch.setenv("CARDLOAD_RETENTION_EVENTS_S", "600")
    store = job_store(real_redis, load_settings(None))
    assert (store.jobs_retention_ms, store.keys_retention_ms) == (3_600_000, 7_200_000)
    assert store.events_retention_ms == 600_000
    defaults = RetentionSettings()  # what the environment does not set
    assert (defaults.jobs_s, defaults.keys_s, defaults.events_s) == (
        30 * DAY_S,
        400 * DAY_S,
        7 * DAY_S,
    )
    # A key that went before its record would let a resubmission load again.
    monkeypatch.setenv("CARDLOAD_RETENTION_KEYS_S", "1800")
    with pytest.raises(SettingsError, match="RETENTION_KEYS_S must be at least"):
        load_settings(None)
    with pytest.raises(ValueError, match="at least as long"):
        make_store(real_redis, jobs_retention_s=10, keys_retention_s=5)


# --- purge ------------------------------------------------------------------------------


def aged(client: redis.Redis, j: CardLoadJob, days: float) -> None:
    """As if the job had last changed ``days`` ago (before retention: kept for good)."""
    at = (datetime.now(UTC) - timedelta(days=days)).isoformat()
    client.hset(keys.job(j.job_id), "updated_at", at)
    for name in job_keys(j):
        client.persist(name)


@pytest.fixture
def kept(real_redis: redis.Redis) -> JobStore:
    """The default periods: records 30 days, keys 400 days."""
    return make_store(real_redis)


@pytest.fixture
def jobs(kept: JobStore, real_redis: redis.Redis) -> dict[str, CardLoadJob]:
    """One job in each state, all last changed 40 days ago, one succeeded lately, and one
    that succeeded 500 days ago (past the keys' period too)."""
    store = kept
    made = {name: job(name) for name in ("queued", "running", "old", "dead", "recent", "ancient")}
    store.admit_many(list(made.values()))
    claimed(store, made["running"].job_id)
    for name in ("old", "recent", "ancient"):
        succeed(store, made[name].job_id)
    dead_letter(store, made["dead"].job_id)
    for name, days in (("queued", 40), ("running", 40), ("old", 40), ("dead", 40)):
        aged(real_redis, made[name], days)
    aged(real_redis, made["ancient"], 500)
    return made


def exists(client: redis.Redis, j: CardLoadJob) -> tuple[bool, bool, bool]:
    return (
        bool(client.exists(keys.job(j.job_id))),
        bool(client.exists(keys.history(j.job_id))),
        bool(client.exists(keys.idempotency(j.idempotency_key))),
    )


def test_a_dry_run_counts_and_deletes_nothing(
    kept: JobStore, real_redis: redis.Redis, jobs: dict[str, CardLoadJob]
) -> None:
    store = kept
    before = sorted(real_redis.scan_iter(count=1000))
    counts = purge_finished(store, 30 * DAY_S, dry_run=True, include_dead_letters=True)
    assert sorted(real_redis.scan_iter(count=1000)) == before
    assert (counts.seen, counts.succeeded, counts.dead_lettered) == (6, 2, 1)
    assert (counts.dead_letter_entries, counts.keys_deleted) == (1, 1)
    assert (counts.kept_unfinished, counts.kept_recent) == (2, 1)


def test_purge_deletes_only_old_finished_jobs(
    kept: JobStore, real_redis: redis.Redis, jobs: dict[str, CardLoadJob]
) -> None:
    store = kept
    counts = purge_finished(store, 30 * DAY_S)
    assert (counts.succeeded, counts.dead_lettered, counts.dead_letter_entries) == (2, 0, 0)
    assert (counts.kept_unfinished, counts.kept_dead_lettered, counts.kept_recent) == (2, 1, 1)
    assert counts.keys_deleted == 1
    statuses = {
        name: record.status if (record := store.load(jobs[name].job_id)) else None
        for name in ("queued", "running", "dead", "recent")
    }
    assert statuses == {
        "queued": JobStatus.QUEUED,
        "running": JobStatus.CREATING,
        "dead": JobStatus.DEAD_LETTERED,
        "recent": JobStatus.SUCCEEDED,
    }
    for name in ("running", "dead", "recent"):
        assert exists(real_redis, jobs[name]) == (True, True, True), name
    assert real_redis.exists(keys.dead_letter("dlq", jobs["dead"].job_id))
    # The old job's record goes, its key stays for what is left of the keys' period...
    assert exists(real_redis, jobs["old"]) == (False, False, True)
    left_s = real_redis.pttl(keys.idempotency("old")) / 1000
    assert 359 * DAY_S < left_s <= 360 * DAY_S
    assert store.admit(job("old")).job_id == jobs["old"].job_id  # still no second load
    # ...and a key past it goes too: a resubmission now is a new load.
    assert exists(real_redis, jobs["ancient"]) == (False, False, False)


def test_purge_takes_dead_letters_only_when_asked(
    kept: JobStore, real_redis: redis.Redis, jobs: dict[str, CardLoadJob]
) -> None:
    store = kept
    dead = jobs["dead"]
    counts = purge_finished(store, 30 * DAY_S, include_dead_letters=True)
    assert (counts.succeeded, counts.dead_lettered, counts.dead_letter_entries) == (2, 1, 1)
    assert exists(real_redis, dead) == (False, False, True)
    assert not real_redis.exists(keys.dead_letter("dlq", dead.job_id))
    assert real_redis.zscore("dlq", dead.job_id) is None
    assert not store.reopen(dead.job_id)  # nothing left to replay
    for name in ("queued", "running", "recent"):
        assert store.load(jobs[name].job_id) is not None, name


def test_purge_leaves_a_job_that_changed_since_it_was_read(
    store: JobStore, real_redis: redis.Redis
) -> None:
    """A dead letter replayed between the scan and the delete is running again."""
    j = job()
    store.admit(j)
    dead_letter(store, j.job_id)
    read: Any = real_redis.hget(keys.job(j.job_id), "updated_at")
    assert store.reopen(j.job_id)
    statuses = [JobStatus.SUCCEEDED, JobStatus.DEAD_LETTERED]
    forgotten = store.forget(j.job_id, updated_at=read.decode(), statuses=statuses, keys_left_ms=0)
    assert forgotten == (False, 0, 0)
    record = store.load(j.job_id)
    assert record is not None and record.status is JobStatus.QUEUED
    assert real_redis.exists(keys.idempotency("k"))


def test_purge_walks_many_jobs_in_batches(store: JobStore, real_redis: redis.Redis) -> None:
    many = [job(f"m{i}") for i in range(120)]
    store.admit_many(many)
    for j in many[:70]:
        succeed(store, j.job_id)
        aged(real_redis, j, 2)
    counts = purge_finished(store, DAY_S, batch=25)
    assert (counts.seen, counts.succeeded, counts.kept_unfinished) == (120, 70, 50)
    assert sum(1 for _ in real_redis.scan_iter(match=keys.JOBS_MATCH, _type="hash")) == 50


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * DAY_S),
        ("12h", 43_200),
        ("90m", 5400),
        ("45s", 45),
        ("2w", 14 * DAY_S),
        ("1d12h", 36 * 3600),
        (" 30D ", 30 * DAY_S),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("30", "write a whole number and a unit"),
        ("30x", "write a whole number and a unit"),
        ("1.5d", "write a whole number and a unit"),
        ("-3d", "write a whole number and a unit"),
        ("", "write a whole number and a unit"),
        ("d", "write a whole number and a unit"),
        ("0d", "give a duration above 0"),
    ],
)
def test_durations_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_duration(text)
