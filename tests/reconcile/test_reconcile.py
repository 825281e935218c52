"""``cardload reconcile``: the API's transactions of a period joined with the job
records, each case made for real against the sandbox (in process for the join, over
HTTP with the CLI)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis

from cardload.jobs import CardLoadJob, JobStatus, keys
from cardload.pipeline import Continue, Finished
from cardload.pipeline.request import build_create_request
from cardload.pipeline.runtime import build_pipeline
from cardload.reconcile import reconcile
from cardload.sandbox import SEED_CARD, SandboxApp, SandboxTransport
from tests.support import make_settings


def test_each_kind_of_finding_and_apply_cancels_what_was_left_created(
    real_redis: redis.Redis,
) -> None:
    app = SandboxApp()
    settings = make_settings("redis://unused", "http://sandbox.test")
    pipeline = build_pipeline(
        settings, client=real_redis, transport=SandboxTransport(app, sleep=lambda _: None)
    )
    secu = settings.secuconnect
    assert secu.contract_id and secu.device_id
    contract, device = secu.contract_id, secu.device_id
    client, store = pipeline.client, pipeline.store

    def load(key: str, cents: int) -> CardLoadJob:
        job = CardLoadJob(idempotency_key=key, card_number=SEED_CARD, amount_cents=cents)
        job_id = store.admit(job).job_id
        assert isinstance(pipeline.create(job_id), Continue)
        assert pipeline.start(job_id) == Finished("succeeded")
        return job

    def extra(job: CardLoadJob, *, start: bool) -> str:
        request = build_create_request(job, contract_id=contract, device_id=device)
        tx = client.create(request)
        if start:
            client.start(tx.id, "cash")
        return tx.id

    try:
        ok = load("rec-ok", 100)
        dead = load("rec-dead", 200)
        real_redis.hset(keys.job(dead.job_id), "status", JobStatus.DEAD_LETTERED.value)
        twice = load("rec-twice", 300)
        second = extra(twice, start=True)
        ended = load("rec-ended", 400)
        left = extra(ended, start=False)
        stranger = CardLoadJob(
            idempotency_key="other-system", card_number=SEED_CARD, amount_cents=5
        )
        unclaimed = extra(stranger, start=True)
        running = CardLoadJob(idempotency_key="rec-running", card_number=SEED_CARD, amount_cents=6)
        running_id = store.admit(running).job_id
        assert isinstance(pipeline.create(running_id), Continue)  # created, start not yet

        now = datetime.now(UTC) + timedelta(seconds=5)
        result = reconcile(
            client, store, since=now - timedelta(hours=1), until=now,
            grace=timedelta(0), apply=True, now=now,
        )  # fmt: skip
        kinds = {f.transaction_id: f.kind for f in result.findings}
        by_ref = {
            f.merchant_ref: f for f in result.findings if f.transaction_id not in (second, left)
        }
        assert by_ref["rec-ok"].kind == "ok"
        assert by_ref["rec-dead"].kind == "loaded_anyway"
        assert kinds[second] == "second_load"
        assert kinds[left] == "left_created"
        assert kinds[unclaimed] == "unclaimed"
        assert by_ref["rec-running"].kind == "in_progress"
        assert result.counts()["ok"] == 3  # ok, the first of twice, ended's own
        cancelled = next(f for f in result.findings if f.transaction_id == left)
        assert cancelled.action == "cancelled" and not cancelled.needs_a_person
        assert client.get(left).status == "cancelled"
        assert sorted(f.kind for f in result.needs_a_person) == [
            "loaded_anyway", "second_load", "unclaimed",
        ]  # fmt: skip
        assert all("*" in f.card for f in result.findings)  # masked
        assert ok.idempotency_key in by_ref
    finally:
        pipeline.leases.stop()
        client.close()
