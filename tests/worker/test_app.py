"""The Celery app's reliability settings and the stall sweep."""

from __future__ import annotations

import json
import time
from typing import Any, cast

import pytest
import redis
from celery.exceptions import Reject, Retry
from kombu.exceptions import OperationalError

from cardload.jobs import CardLoadJob, HistoryEntry, JobStatus, JobStore, LoadResult
from cardload.jobs.store import Announcement, Claimed
from cardload.pipeline import Continue, RetryLater
from cardload.tasks.card_load import act
from cardload.worker import create_app
from cardload.worker.settings import celery_config
from cardload.worker.sweeper import recover_stalled
from tests.support import make_settings, queued


def test_reliability_settings() -> None:
    settings = make_settings("redis://x:1/0", "http://sb", jobs={"visibility_timeout_s": 3600})
    conf = celery_config(settings)
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    # Two per thread: a received create waits for a thread while its key is looked up
    # (pipeline/prefetch.py); with one, it is received only when a thread is free.
    assert conf["worker_prefetch_multiplier"] == 4
    assert conf["worker_send_task_events"] and conf["task_send_sent_event"]
    for key in ("broker_transport_options", "result_backend_transport_options"):
        assert conf[key]["visibility_timeout"] == 3600
    assert conf["visibility_timeout"] == 3600
    assert conf["broker_transport_options"]["unacked_restore_throttle"] == 1
    assert settings.retry.max_backoff_s * 2 <= 3600


def test_retry_delays_must_fit_the_visibility_timeout() -> None:
    from pydantic import ValidationError

    from cardload.config import SettingsError

    with pytest.raises((ValidationError, SettingsError), match="at most half of"):
        make_settings(
            "redis://x:1/0",
            "http://sb",
            retry={"max_backoff_s": 600.0},
            jobs={"visibility_timeout_s": 1000},
        )


def test_stalled_jobs_are_sent_again(real_redis: redis.Redis, redis_url: str) -> None:
    settings = make_settings(redis_url, "http://sb")
    app, store = create_app(settings), JobStore(real_redis)
    stuck = [
        CardLoadJob(idempotency_key=f"k{i}", card_number="9276004424644352", amount_cents=100)
        for i in range(3)
    ]
    store.admit_many(stuck)  # admitted, never sent: a producer that died
    for job in stuck[1:]:  # one created (its start message lost), one succeeded
        claim = store.claim(job.job_id, "create", lease_ms=10_000, max_attempts=4)
        assert isinstance(claim, Claimed)
        store.finish_step(
            claim.lease,
            HistoryEntry(status=JobStatus.CREATED),
            {"status": "created", "transaction_id": "STX_1"},
        )
    claim = store.claim(stuck[2].job_id, "start", lease_ms=10_000, max_attempts=4)
    assert isinstance(claim, Claimed)
    result = LoadResult(
        transaction_id="STX_1", status="ok", cash_cents=1, bonus_cents=0, total_cents=1, receipt=[]
    )
    event = Announcement(f"{stuck[2].job_id}:succeeded", "card_load.succeeded", "{}")
    store.succeed(claim.lease, result, HistoryEntry(status=JobStatus.SUCCEEDED), event)
    assert recover_stalled(app, store, stall_after_s=60) == 0  # not stalled yet
    assert recover_stalled(app, store, stall_after_s=60, now=time.time() + 61) == 2
    tasks = sorted(json.loads(m)["headers"]["task"] for m in queued(real_redis))
    assert tasks == ["cardload.create", "cardload.start"]
    # Sending counts as progress: half a stall period later, nothing is sent again.
    assert recover_stalled(app, store, stall_after_s=60, now=time.time() + 30) == 0


class _Task:
    """What :func:`cardload.tasks.card_load.act` uses of a bound task: its app and retry()."""

    def __init__(self, send_error: Exception | None) -> None:
        self.sent: list[str] = []
        self.retries: list[tuple[float, BaseException | None]] = []
        self.send_error = send_error
        self.app = self

    def send_task(self, name: str, **_: Any) -> None:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(name)

    def retry(
        self, *, countdown: float, max_retries: Any, exc: BaseException | None = None
    ) -> Retry:
        self.retries.append((countdown, exc))
        return Retry(exc=exc, when=countdown)


@pytest.mark.parametrize(
    "error", [OperationalError("broker unreachable"), redis.ConnectionError("reset")]
)
def test_a_next_step_that_cannot_be_sent_retries_the_task(error: Exception) -> None:
    """Not acknowledged as done: the task runs again, finds its state saved, sends again."""
    task = _Task(error)
    with pytest.raises(Retry):
        act(cast(Any, task), "j1", Continue("start"))
    assert task.sent == [] and task.retries == [(2.0, error)]
    ok = _Task(None)
    assert act(cast(Any, ok), "j1", Continue("start")) == "continue: start"
    assert ok.sent == ["cardload.start"] and ok.retries == []


def test_a_retry_that_cannot_be_published_hands_the_message_back() -> None:
    """With the broker down, Celery cannot publish a retry and would drop the message
    (Reject without requeue): our tasks hand it back to the broker instead."""
    settings = make_settings("redis://127.0.0.1:1/0", "http://sb")
    app = create_app(settings)
    app.conf.update(
        task_publish_retry=False, broker_connection_retry=False, broker_connection_max_retries=0
    )
    task = app.tasks["cardload.create"]
    task.push_request(
        id="t1", args=["j1"], kwargs={}, retries=0, delivery_info={}, called_directly=False
    )
    try:
        with pytest.raises(Reject) as rejected:
            act(task, "j1", Continue("start"))
    finally:
        task.pop_request()
    assert rejected.value.requeue


def test_one_unreadable_record_does_not_stop_the_sweep(
    real_redis: redis.Redis, redis_url: str
) -> None:
    settings = make_settings(redis_url, "http://sb")
    app, store = create_app(settings), JobStore(real_redis)
    good = CardLoadJob(idempotency_key="good", card_number="9276004424644352", amount_cents=100)
    store.admit(good)
    broken = "0" * 32  # a hash whose job is gone (half of a lost write)
    real_redis.hset(f"cardload:job:{broken}", "dispatched", 1)
    real_redis.zadd("cardload:jobs:active", {broken: 1})
    assert recover_stalled(app, store, stall_after_s=60, now=time.time() + 61) == 1
    [message] = queued(real_redis)
    assert good.job_id.encode() in message


def test_a_thousand_unreadable_records_do_not_hide_a_stalled_job(
    real_redis: redis.Redis, redis_url: str
) -> None:
    settings = make_settings(redis_url, "http://sb")
    app, store = create_app(settings), JobStore(real_redis)
    broken = {f"{i:032x}": 1 for i in range(1001)}  # older than any real job
    real_redis.zadd("cardload:jobs:active", broken)
    good = CardLoadJob(idempotency_key="good", card_number="9276004424644352", amount_cents=100)
    store.admit(good)
    later = time.time() + 61
    assert recover_stalled(app, store, stall_after_s=60, now=later) == 0  # set aside first
    assert recover_stalled(app, store, stall_after_s=60, now=later) == 1
    assert real_redis.scard("cardload:jobs:set_aside") == 1001


def test_a_step_waiting_for_a_token_is_not_taken_for_stalled(
    real_redis: redis.Redis, redis_url: str
) -> None:
    from cardload.pipeline.runtime import build_pipeline
    from cardload.sandbox import SandboxApp, SandboxTransport

    settings = make_settings(
        redis_url, "http://sandbox.test", secuconnect={"client_secret": "wrong"}
    )
    pipeline = build_pipeline(settings, client=real_redis, transport=SandboxTransport(SandboxApp()))
    job = CardLoadJob(idempotency_key="t", card_number="9276004424644352", amount_cents=100)
    store = pipeline.store
    store.admit(job)
    real_redis.zadd("cardload:jobs:active", {job.job_id: 1})  # silent for ages...
    assert isinstance(pipeline.create(job.job_id), RetryLater)  # ...then waits
    assert store.stalled(store.server_time() - 60) == []  # alive: no second message
    pipeline.leases.stop()
