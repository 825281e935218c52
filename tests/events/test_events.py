from __future__ import annotations

from datetime import UTC, datetime

import fakeredis

from cardload.events import CardLoadSucceeded, EventBalances, EventReceipt, EventStream
from cardload.events.schema import SCHEMA_FILE, render_schema
from cardload.jobs import JobSource

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def event(job_id: str = "j1") -> CardLoadSucceeded:
    return CardLoadSucceeded(
        event_id=f"{job_id}:succeeded",
        occurred_at=NOW,
        job_id=job_id,
        idempotency_key="k",
        source=JobSource(batch_id="b", row=3),
        card_number="927600******4352",
        amount_cents=2000,
        currency="EUR",
        attempts={"create": 1, "start": 1},
        enqueued_at=NOW,
        transaction_id="STX_1",
        status="ok",
        balances=EventBalances(cash_cents=2200, bonus_cents=810, total_cents=3010),
        receipt=EventReceipt(lines=[{"type": "space"}], text=""),
        finished_at=NOW,
    )


def test_committed_schema_is_generated_from_the_models() -> None:
    assert SCHEMA_FILE.read_text() == render_schema(), (
        "run: cardload events schema > events/schema.json"
    )


def append(client: fakeredis.FakeRedis, ev: CardLoadSucceeded) -> None:
    """As the job store's scripts append an event."""
    client.xadd("ev", {"event_id": ev.event_id, "type": ev.type, "data": ev.model_dump_json()})


def test_entries_read_back_as_events(fake_redis: fakeredis.FakeRedis) -> None:
    append(fake_redis, event())
    [entry] = EventStream(fake_redis, "ev").read()
    assert entry.event == event()


def test_consumer_groups(fake_redis: fakeredis.FakeRedis) -> None:
    stream = EventStream(fake_redis, "ev")
    stream.ensure_group("billing")
    stream.ensure_group("billing")  # idempotent
    for job_id in ("a", "b"):
        append(fake_redis, event(job_id))
    entries = stream.read_group("billing", "c1")
    assert [e.event.job_id for e in entries] == ["a", "b"]
    stream.ack("billing", *(e.stream_id for e in entries))
    assert stream.read_group("billing", "c1") == []
    assert [e.event.job_id for e in stream.tail(1)] == ["b"]
