"""``CARDLOAD_JOBS_REPLICAS_ACK``: an enqueue returns only once the replicas asked for
hold its jobs, and says it is unavailable (send again, same keys) when they do not.
A real primary and replica on free ports; the replica detached and attached again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import redis

from cardload.cli.localstack import redis_server
from cardload.jobs import Admission, CardLoadJob, IdempotencyConflict, JobStore, keys
from cardload.producers.batch import submit_batch
from cardload.producers.enqueue import CardLoadProducer, JobStoreUnavailable, NotReplicated
from cardload.worker import create_app
from tests.services import wait_for
from tests.support import make_settings


@pytest.fixture
def pair() -> Iterator[tuple[redis.Redis, redis.Redis, int]]:
    """A primary, and a replica of it; the primary's port."""
    # No 5 s wait before a first sync (repl-diskless-sync-delay) in a test.
    with redis_server("--repl-diskless-sync-delay", "0") as primary_url:
        port = urlparse(primary_url).port
        assert port is not None
        with redis_server("--replicaof", "127.0.0.1", str(port)) as replica_url:
            primary, replica = redis.Redis.from_url(primary_url), redis.Redis.from_url(replica_url)
            _in_sync(primary)
            yield primary, replica, port
            primary.close()
            replica.close()


def _in_sync(primary: redis.Redis) -> None:
    """The primary counts the replica in a WAIT once it is online (after its first
    acknowledgement following the sync), not when the replica's link is up."""

    def online() -> bool:
        replica: dict[str, object] = primary.info("replication").get("slave0") or {}
        return replica.get("state") == "online"

    wait_for(online, 30, "a replica online")


def _producer(primary: redis.Redis, replicas: int, timeout_s: float = 2.0) -> CardLoadProducer:
    """Waits ``timeout_s`` for the replicas: long enough for one just attached (it may
    take up to a second), short where none is there to answer."""
    address = primary.connection_pool.connection_kwargs
    url = f"redis://{address['host']}:{address['port']}/0"
    jobs = {"replicas_ack": replicas, "replicas_ack_timeout_s": timeout_s}
    settings = make_settings(url, "http://127.0.0.1:9", jobs=jobs)
    return CardLoadProducer(create_app(settings), JobStore(primary), settings)


def _jobs(n: int, first: int = 0) -> list[CardLoadJob]:
    return [
        CardLoadJob(
            idempotency_key=f"replicated-{i}", card_number=f"92761000{i:08d}", amount_cents=100
        )
        for i in range(first, first + n)
    ]


def test_an_enqueue_returns_once_the_replica_holds_its_jobs(
    pair: tuple[redis.Redis, redis.Redis, int],
) -> None:
    primary, replica, _ = pair
    jobs = _jobs(50)
    results = _producer(primary, 1).enqueue_many(jobs)
    # Read on the replica at once: nothing to wait for, it is there already.
    assert all(replica.exists(keys.job(r.job_id)) for r in results)
    assert replica.exists(keys.idempotency(jobs[0].idempotency_key))


def test_without_the_replica_the_enqueue_is_unavailable_and_sending_again_finishes_it(
    pair: tuple[redis.Redis, redis.Redis, int],
) -> None:
    primary, replica, port = pair
    replica.replicaof("NO", "ONE")  # detached: the primary has no replica to confirm
    wait_for(lambda: primary.info("replication")["connected_slaves"] == 0, 10, "detached")
    producer = _producer(primary, 1, timeout_s=0.3)
    jobs = _jobs(5, first=100)
    with pytest.raises(NotReplicated) as raised:
        producer.enqueue_many(jobs)
    assert isinstance(raised.value, JobStoreUnavailable)  # what producers already handle
    assert "0 of 1 replica" in str(raised.value) and "same keys" in str(raised.value)
    admitted = JobStore(primary).job_id_for_key(jobs[0].idempotency_key)
    assert admitted is not None  # admitted and sent: only not confirmed
    replica.replicaof("127.0.0.1", port)
    _in_sync(primary)
    again = _producer(primary, 1).enqueue_many(jobs)  # the same keys: the same jobs, confirmed
    assert all(isinstance(r, Admission) and not r.created for r in again)
    assert again[0].job_id == admitted
    assert all(replica.exists(keys.job(r.job_id)) for r in again)


def test_off_by_default_it_never_waits(pair: tuple[redis.Redis, redis.Redis, int]) -> None:
    primary, replica, _ = pair
    replica.replicaof("NO", "ONE")
    wait_for(lambda: primary.info("replication")["connected_slaves"] == 0, 10, "detached")
    results = _producer(primary, 0).enqueue_many(_jobs(3, first=200))
    assert all(isinstance(r, Admission) and r.created for r in results)
    assert not primary.exists(keys.REPLICATION_MARK)


def test_a_server_that_lost_the_jobs_since_is_not_taken_for_their_confirmation(
    pair: tuple[redis.Redis, redis.Redis, int],
) -> None:
    """A failover between the admission and the WAIT: the new primary (here the same
    server, its keys dropped) has replicas to confirm, but not the jobs."""
    primary, _, _ = pair
    producer = _producer(primary, 1)
    jobs = _jobs(3, first=300)
    mark = producer.store.mark_dispatched

    def then_lost(job_ids: Any) -> None:
        mark(job_ids)
        primary.delete(*[keys.idempotency(job.idempotency_key) for job in jobs])

    producer.store.mark_dispatched = then_lost  # type: ignore[method-assign]
    with pytest.raises(NotReplicated, match="holds 0 of them"):
        producer.enqueue_many(jobs)


def test_a_call_that_admits_nothing_does_not_wait(
    pair: tuple[redis.Redis, redis.Redis, int],
) -> None:
    primary, replica, _ = pair
    producer = _producer(primary, 1)
    [job] = _jobs(1, first=400)
    producer.enqueue_many([job])
    replica.replicaof("NO", "ONE")
    wait_for(lambda: primary.info("replication")["connected_slaves"] == 0, 10, "detached")
    other = job.model_copy(update={"amount_cents": 999, "job_id": "f" * 32})
    [result] = producer.enqueue_many([other])  # a conflict, not "unavailable" (HTTP 409)
    assert isinstance(result, IdempotencyConflict)


def test_a_batch_file_goes_in_whole_and_is_recorded_before_it_says_so(
    pair: tuple[redis.Redis, redis.Redis, int], tmp_path: Path
) -> None:
    primary, replica, port = pair
    replica.replicaof("NO", "ONE")
    wait_for(lambda: primary.info("replication")["connected_slaves"] == 0, 10, "detached")
    path = tmp_path / "payroll.csv"
    rows = [f"92760{i:011d},1.00,EUR,emp-{i}" for i in range(2500)]  # three chunks
    path.write_text("card_number,amount,currency,reference\n" + "\n".join(rows) + "\n")
    producer = _producer(primary, 1, timeout_s=0.3)
    with pytest.raises(NotReplicated, match="recorded \\(2500 new, 0 known\\)") as raised:
        submit_batch(producer, path)
    assert "0 of 1 replica" in str(raised.value)
    assert str(raised.value).endswith("submit the same file again")
    batch_id = str(raised.value).split()[1]
    assert primary.hlen(keys.batch_rows(batch_id)) == 2500  # recorded: status answers
    replica.replicaof("127.0.0.1", port)
    _in_sync(primary)
    again = submit_batch(_producer(primary, 1), path)  # the same file: the same jobs
    assert (again.batch_id, again.enqueued, again.already_known) == (batch_id, 0, 2500)
