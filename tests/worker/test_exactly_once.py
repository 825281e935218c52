"""Exactly once on the paths that are hard to walk: Redis losing its last writes, a
worker frozen past its lease while another delivery takes the job over, a next-step
message lost in the broker, and the access token kept out of Redis. Real
redis-servers, real ``cardload worker`` processes, the sandbox over HTTP; every claim
checked against the sandbox's ledger of applied loads and the event stream."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from cardload.events import EventStream
from cardload.jobs import CardLoadJob, JobStatus, job_store, keys
from cardload.producers.enqueue import CardLoadProducer
from cardload.sandbox import SEED_CARD, SandboxApp, serve_in_thread
from cardload.worker import create_app
from cardload.worker.dispatch import Dispatch, send_steps
from tests.services import RedisProcess, WorkerProcess, wait_for
from tests.support import make_settings, queued
from tests.worker.conftest import Stack


def job(key: str = "order-1", card: str = SEED_CARD, cents: int = 2000) -> CardLoadJob:
    return CardLoadJob(idempotency_key=key, card_number=card, amount_cents=cents)


def succeeded_events(client: redis.Redis, stream: str, job_id: str) -> list[Any]:
    return [
        e.event
        for e in EventStream(client, stream).read(count=1000)
        if e.event.job_id == job_id and e.event.type == "card_load.succeeded"
    ]


def test_a_redis_restored_from_an_older_snapshot_loads_the_card_once(tmp_path: Path) -> None:
    """The snapshot holds the job queued; after it the card is loaded and announced;
    then Redis dies and comes back from that snapshot: job queued, no transaction, its
    create message in the queue again. The redelivered create must not make a second
    transaction: the server's new run_id tells the step to look the first one up."""
    server_dir = tmp_path / "redis"
    redis_process = RedisProcess(server_dir)
    sandbox = SandboxApp()
    try:
        with serve_in_thread(sandbox) as api:
            settings = make_settings(redis_process.url, api.url)
            client = redis.Redis.from_url(redis_process.url)
            store = job_store(client, settings)
            producer = CardLoadProducer(create_app(settings), store, settings)
            job_id = producer.enqueue(job())
            client.save()  # the snapshot: queued, message queued
            first = WorkerProcess(settings, "--concurrency=4", log_path=tmp_path / "w1.log")
            wait_for(lambda: (r := store.load(job_id)) and r.done, 60, "the first run")
            first.stop()
            loaded = store.load(job_id)
            assert loaded is not None and loaded.status is JobStatus.SUCCEEDED
            assert len(sandbox.world.ledger) == 1

            redis_process.kill()
            redis_process.start()  # back from the snapshot: the last writes are lost
            client = redis.Redis.from_url(redis_process.url)
            store = job_store(client, settings)
            restored = store.load(job_id)
            assert restored is not None and restored.status is JobStatus.QUEUED
            assert restored.transaction_id is None and len(queued(client)) == 1
            second = WorkerProcess(settings, "--concurrency=4", log_path=tmp_path / "w2.log")
            try:
                record = wait_for(
                    lambda: (r := store.load(job_id)) and r.done and r, 60, "the replayed run"
                )
            finally:
                second.stop()
            assert record.status is JobStatus.SUCCEEDED
            assert record.transaction_id == loaded.transaction_id  # found, not made again
            assert len(sandbox.world.transactions) == 1 and len(sandbox.world.ledger) == 1
            # One lookup before the first create, one before the create after the restore.
            assert sandbox.requests["create"] == 1 and sandbox.requests["list"] == 2
            [event] = succeeded_events(client, settings.events.stream, job_id)
            assert event.balances is not None and event.balances.cash_cents == 2200
            client.close()
    finally:
        redis_process.stop()


def test_a_worker_frozen_past_its_lease_never_loads_twice(stack: Stack) -> None:
    """Worker A freezes while it reads the transaction before its second start; its
    lease runs out, worker B takes the job over and starts the payment, which takes a
    while. A wakes with its stale read ("created"), starts, is refused: the payment is
    processing. A waits (it does not dead-letter a card being loaded), its late writes
    are refused by the fence, and B's success is the one that counts."""
    settings = stack.settings.model_copy(
        update={"jobs": stack.settings.jobs.model_copy(update={"lease_s": 1.0})}
    )
    stack.faults(
        {"kind": "error_503", "endpoint": "start", "times": 1},  # A's first start: ambiguous
        {"kind": "slow", "endpoint": "get", "times": 1, "delay_ms": 3000},  # A's read, late
        {"kind": "processing", "endpoint": "start", "times": 1, "delay_ms": 2500},  # B's start
    )
    a = stack.start_worker(settings=settings)
    job_id = stack.producer.enqueue(job())
    wait_for(lambda: stack.sandbox.requests["get"] == 1, 30, "A to read before its 2nd start")
    a.freeze()
    try:
        leased_until = int(stack.redis.hget(keys.job(job_id), "lock_until_ms") or 0)
        wait_for(lambda: time.time() * 1000 > leased_until + 100, 10, "A's lease to run out")
        stack.start_worker(settings=settings)
        send_steps(stack.producer.app, [Dispatch("start", job_id, "duplicate")], "cardload")
        [tx] = stack.sandbox.world.transactions.values()
        wait_for(lambda: tx.status == "processing", 30, "B to start the payment")
    finally:
        a.thaw()
    record = stack.finished(job_id, timeout_s=60)
    assert record.status is JobStatus.SUCCEEDED, record.error
    wait_for(lambda: "job.fence_lost" in a.log(), 30, "A to learn it lost the job")
    assert len(stack.ledger()) == 1
    assert [e.type for e in stack.events_for(job_id)] == ["card_load.succeeded"]
    assert stack.redis.zcard(stack.settings.events.dead_letters) == 0
    # A's start arrived while the payment was processing and was refused, or A saw
    # it had lost the job and never sent it; either way one load.
    assert stack.sandbox.requests["start"] in (2, 3)


def test_a_lost_next_step_message_still_ends_in_one_success_event(stack: Stack) -> None:
    """The start message is lost in the broker after the create was saved: the stall
    sweep sends it again, the card is loaded once and announced once."""
    settings = stack.settings.model_copy(
        update={"jobs": stack.settings.jobs.model_copy(update={"stall_after_s": 10})}
    )
    stack.faults({"kind": "slow", "endpoint": "create", "times": 1, "delay_ms": 2000})
    stack.start_worker(settings=settings)
    control = stack.producer.app.control
    job_id = stack.producer.enqueue(job())
    wait_for(lambda: stack.sandbox.requests["create"] == 1, 30, "the create to be under way")
    replies = control.cancel_consumer(settings.jobs.queue, reply=True, timeout=5)
    assert replies, "the worker did not answer"

    def start_message() -> Any:
        messages: Any = stack.redis.lrange(settings.jobs.queue, 0, -1)
        return next((m for m in messages if b"cardload.start" in m and job_id.encode() in m), None)

    message = wait_for(start_message, 30, "the start message to be queued")
    assert stack.redis.lrem(settings.jobs.queue, 1, message) == 1  # lost
    control.add_consumer(settings.jobs.queue, reply=True, timeout=5)
    record = stack.finished(job_id, timeout_s=60)
    assert record.status is JobStatus.SUCCEEDED
    assert any(h.note == "stalled: start sent again" for h in record.history)
    assert len(stack.ledger()) == 1
    assert [e.type for e in stack.published(job_id)] == ["card_load.succeeded"]


def test_the_access_token_never_reaches_redis(stack: Stack) -> None:
    stack.redis.set(keys.LEGACY_TOKEN, "a-token-cardload-0.1-left-behind")
    worker = stack.start_worker()
    wait_for(lambda: not stack.redis.exists(keys.LEGACY_TOKEN), 10, "the old copy to go")
    assert stack.finished(stack.producer.enqueue(job())).status is JobStatus.SUCCEEDED
    tokens = list(stack.sandbox.auth._expiry)
    assert len(tokens) == 1
    everything = repr(dump(stack.redis))
    assert tokens[0] not in everything and "sandbox-secret" not in everything
    assert tokens[0] not in worker.log()


def dump(client: redis.Redis) -> dict[str, Any]:
    """Every key and value in Redis, whatever its type."""
    readers: dict[bytes, Callable[[Any], Any]] = {
        b"string": client.get,
        b"hash": client.hgetall,
        b"list": lambda k: client.lrange(k, 0, -1),
        b"set": client.smembers,
        b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
        b"stream": client.xrange,
    }
    out: dict[str, Any] = {}
    for key in client.scan_iter(count=1000):
        kind: Any = client.type(key)
        if kind in readers:  # else b"none": it expired since the scan
            out[repr(key)] = readers[kind](key)
    return out
