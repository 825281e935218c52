"""Calls held back by the API's shared breaker never end a job: a start whose
answer was lost, on its last attempt, with the breaker opening on that very failure,
waits (unsettled) for the read that settles it instead of being dead-lettered as
possibly loaded; once the breaker closes, the read finds it paid."""

from __future__ import annotations

import pytest
import redis

from cardload.flowcontrol import breaker as breaker_module
from cardload.jobs import CardLoadJob, JobStatus, keys
from cardload.pipeline import Continue, Finished, RetryLater
from cardload.pipeline.runtime import build_pipeline
from cardload.sandbox import SEED_CARD, FaultSettings, SandboxApp, SandboxTransport
from tests.support import make_settings


def test_a_settle_read_held_by_the_breaker_waits_instead_of_dead_lettering(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(breaker_module, "REFRESH_S", 0.0)  # every ask reads Redis
    app = SandboxApp()
    settings = make_settings(
        "redis://unused", "http://sandbox.test", retry={"max_attempts": 1}, breaker={"failures": 1}
    )
    pipeline = build_pipeline(
        settings, client=real_redis, transport=SandboxTransport(app, sleep=lambda _: None)
    )
    try:
        job = CardLoadJob(idempotency_key="held-1", card_number=SEED_CARD, amount_cents=2000)
        job_id = pipeline.store.admit(job).job_id
        assert isinstance(pipeline.create(job_id), Continue)
        lost = {"kind": "commit_then_lose", "endpoint": "start", "times": 1, "lose_as": "503"}
        app.faults.configure(FaultSettings.model_validate({"rules": [lost]}))
        outcome = pipeline.start(job_id)  # loaded; its 503 opens the breaker
        assert isinstance(outcome, RetryLater)
        record = pipeline.store.load(job_id)
        assert record is not None and record.status is JobStatus.STARTING
        assert record.load_uncertain  # still to be settled by a read
        assert real_redis.zcard(settings.events.dead_letters) == 0
        assert len(app.world.ledger) == 1

        real_redis.hset(keys.BREAKER, "open_until_ms", 0)  # the open period is over
        assert pipeline.start(job_id) == Finished("succeeded")  # the probe: a read
        assert len(app.world.ledger) == 1
    finally:
        pipeline.leases.stop()
        pipeline.client.close()
