"""The whole product with real parts: our own redis-server, ``cardload worker``
subprocesses, the sandbox over HTTP. Every claim of exactly-once effect is checked
against the sandbox's ledger of applied loads."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cardload.events import CardLoadFailed, CardLoadSucceeded
from cardload.jobs import CardLoadJob, ExtraLine, IdempotencyConflict, JobRecord, JobStatus
from cardload.sandbox import LOCKED_CARD, SEED_CARD
from tests.services import run_cli, wait_for
from tests.support import assert_seed_result
from tests.worker.conftest import Stack


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Every test here runs with each broker (the job store is Redis either way)."""
    kind: str = request.param
    return kind


def enqueue(stack: Stack, key: str = "order-1", **fields: Any) -> str:
    job = CardLoadJob.model_validate(
        {"idempotency_key": key, "card_number": SEED_CARD, "amount_cents": 2000} | fields
    )
    return stack.producer.enqueue(job)


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(stack.settings, *args)


def test_seed_case_end_to_end(running: Stack) -> None:
    dining = ExtraLine(
        desc="Dining service Puslnitz, 26 pieces",
        price_one_cents=5900,
        tax=19,
        article_number="30200",
    )
    job_id = enqueue(running, extra_lines=[dining])
    record = running.finished(job_id)
    assert record.status is JobStatus.SUCCEEDED, record.error
    [event] = running.published(job_id)
    assert isinstance(event, CardLoadSucceeded)
    assert_seed_result(event, running.store.load(job_id))
    assert [e["amount_cents"] for e in running.ledger()] == [2000]
    log = running.workers[0].log()
    assert job_id in log and "927600******4352" in log
    assert SEED_CARD not in log
    assert "sandbox-secret" not in log
    view = json.loads(cli(running, "job", job_id, "--json").stdout)
    assert view["result"]["card_number"] == "927600******4352"
    assert view["result"]["total_cents"] == 3010
    assert running.sandbox.auth.expire_all() == 1  # the one token, never logged:
    assert not any(token in log for token in running.sandbox.auth._expiry)


def test_503s_then_success(running: Stack) -> None:
    running.faults(
        {"kind": "error_503", "endpoint": "create", "times": 2},
        {"kind": "error_503", "endpoint": "start", "times": 1},
    )
    record = running.finished(enqueue(running))
    assert record.status is JobStatus.SUCCEEDED
    assert record.attempts == {"create": 3, "start": 2}
    assert len(running.ledger()) == 1


def test_rate_limit_retry_after_is_honoured(running: Stack) -> None:
    running.faults({"kind": "rate_limit", "endpoint": "start", "times": 1, "retry_after_s": 1})
    record = running.finished(enqueue(running))
    assert record.status is JobStatus.SUCCEEDED
    starts = [
        h
        for h in record.history
        if h.step == "start" and h.status is JobStatus.STARTING and h.error is None
    ]
    retry = next(h for h in record.history if h.error and h.error.kind == "rate_limited")
    assert retry.note == "retry in 1.0 s"
    assert (starts[1].at - starts[0].at).total_seconds() >= 1.0  # not before the server allowed


def test_expired_token_is_refreshed(running: Stack) -> None:
    assert running.finished(enqueue(running, "first")).status is JobStatus.SUCCEEDED
    running.sandbox.auth.expire_all()
    assert running.finished(enqueue(running, "second")).status is JobStatus.SUCCEEDED
    assert running.sandbox.requests["token"] == 2


def test_permanent_error_dead_lettered_without_retries(running: Stack) -> None:
    job_id = enqueue(running, card_number=LOCKED_CARD)
    record = running.finished(job_id)
    assert record.status is JobStatus.DEAD_LETTERED
    assert record.attempts == {"create": 1}
    [event] = running.published(job_id)
    assert (
        isinstance(event, CardLoadFailed) and event.error.api_error == "ProductNotAllowedException"
    )
    listing = cli(running, "dlq", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    assert (
        '"api_error": "ProductNotAllowedException"' in listing.stdout and job_id in listing.stdout
    )
    assert "9276000000000001" not in listing.stdout  # masked
    shown_text = cli(running, "dlq", "show", job_id, "--json").stdout
    shown = json.loads(shown_text)
    assert shown["error_kind"] == "permanent" and shown["support_id"]
    assert shown["load_uncertain"] is False
    # The API's error text quoted the card: masked in the dead letter, the event, the job.
    assert shown["api_error_details"] == "idents[0].value: card 927600******0001 is locked"
    assert event.error.api_error_details == shown["api_error_details"]
    job_text = cli(running, "job", job_id, "--json").stdout
    for text in (shown_text, job_text, cli(running, "dlq", "show", job_id).stdout):
        assert LOCKED_CARD not in text
    assert [h["status"] for h in shown["history"]][-1] == "creating"
    assert cli(running, "dlq", "purge", job_id).returncode == 0
    assert cli(running, "dlq", "show", job_id).returncode == 1
    kept = running.store.load(job_id)
    assert kept is not None and kept.status is JobStatus.DEAD_LETTERED  # the record stays


def test_replay_succeeds_once(running: Stack) -> None:
    running.faults({"kind": "error_503", "endpoint": "start"})
    job_id = enqueue(running)
    assert running.finished(job_id).status is JobStatus.DEAD_LETTERED
    running.faults()
    replay = cli(running, "dlq", "replay", job_id)
    assert replay.returncode == 0, replay.stderr

    def succeeded() -> JobRecord | None:
        record = running.store.load(job_id)
        return record if record and record.status is JobStatus.SUCCEEDED else None

    record = wait_for(succeeded, 60, "the replayed job to succeed")
    assert record.generation == 1
    assert len(running.ledger()) == 1
    assert [e.type for e in running.published(job_id, 2)] == [
        "card_load.failed",
        "card_load.succeeded",
    ]
    assert cli(running, "dlq", "replay", job_id).returncode == 1  # nothing left to replay


@pytest.mark.parametrize("endpoint", ["create", "start"])
def test_commit_then_lose_loads_exactly_once(running: Stack, endpoint: str) -> None:
    lose = {"kind": "commit_then_lose", "endpoint": endpoint, "times": 1}
    # Lost by a reset, then (next job) by silence past the 5 s read timeout.
    running.faults(lose | {"lose_as": "reset"}, lose | {"lose_as": "timeout", "delay_ms": 6000})
    first, second = enqueue(running, "lost-1"), enqueue(running, "lost-2")
    for job_id in (first, second):
        assert running.finished(job_id).status is JobStatus.SUCCEEDED
        assert len(running.published(job_id)) == 1
    assert len(running.sandbox.world.transactions) == 2
    assert [e["amount_cents"] for e in running.ledger()] == [2000, 2000]


def test_worker_killed_mid_job_loads_once(stack: Stack) -> None:
    # The start takes effect at once and answers 3 s later: kill the worker in between.
    stack.faults({"kind": "slow", "endpoint": "start", "times": 1, "delay_ms": 3000})
    doomed = stack.start_worker()
    job_id = enqueue(stack)
    wait_for(stack.ledger, 30, "the card to be loaded")
    record = stack.store.load(job_id)
    assert record is not None and record.status is JobStatus.STARTING
    doomed.kill()
    stack.start_worker()
    record = stack.finished(job_id, timeout_s=90)
    assert record.status is JobStatus.SUCCEEDED
    assert len(stack.ledger()) == 1
    assert len(stack.published(job_id)) == 1
    assert stack.sandbox.requests["start"] == 1  # the redelivery read the transaction instead


def test_duplicate_idempotency_key(running: Stack) -> None:
    first = enqueue(running, "same-key")
    assert enqueue(running, "same-key") == first
    with pytest.raises(IdempotencyConflict):
        enqueue(running, "same-key", amount_cents=2100)
    assert running.finished(first).status is JobStatus.SUCCEEDED
    assert len(running.ledger()) == 1


def test_batch_file_through_the_cli(running: Stack, tmp_path: Path) -> None:
    batch = tmp_path / "gift.csv"
    batch.write_text(
        "card_number,amount,currency,reference\n"
        "9276000000000003,50.00,EUR,gift-1\n"
        "9276000000000003,25.00,EUR,gift-2\n"
        "9276000000000001,10.00,EUR,gift-3\n"
        "9276000000000003,abc,EUR,gift-4\n"
    )
    submitted = cli(running, "batch", "submit", str(batch), "--json")
    result = json.loads(submitted.stdout)
    assert (result["enqueued"], result["invalid"]) == (
        3,
        [{"row": 4, "field": "amount", "reason": "'abc' is not an amount like 20.00"}],
    )

    def finished() -> dict[str, Any] | None:
        status: dict[str, Any] = json.loads(
            cli(running, "batch", "status", result["batch_id"], "--json").stdout
        )
        return status if status["finished"] else None

    status = wait_for(finished, 60, "the batch to finish")
    assert status["by_status"] == {"succeeded": 2, "dead_lettered": 1}
    report = tmp_path / "report.csv"
    assert cli(running, "batch", "report", result["batch_id"], "--out", str(report)).returncode == 0
    rows = list(csv.DictReader(report.read_text().splitlines()))
    assert [(r["row"], r["outcome"]) for r in rows] == [
        ("1", "succeeded"),
        ("2", "succeeded"),
        ("3", "dead_lettered"),
        ("4", "invalid"),
    ]
    # Both loads hit one gift card, in either order: the later one sees 75,00 EUR.
    assert max(int(rows[0]["new_balance_cents"]), int(rows[1]["new_balance_cents"])) == 7500
    assert "card 927600******0001 is locked" in rows[2]["error"]
    assert rows[0]["transaction_id"].startswith("STX_")
    assert cli(running, "batch", "submit", str(batch), "--json").stdout.count('"enqueued": 0') == 1
    assert len(running.ledger()) == 2
    tail = cli(running, "events", "tail", "--json")
    types = [json.loads(line)["type"] for line in tail.stdout.splitlines()]
    assert sorted(types) == ["card_load.failed", "card_load.succeeded", "card_load.succeeded"]


def test_creates_looked_up_ahead_load_each_card_once(stack: Stack) -> None:
    """Searches 40 ms away: the worker looks creates' keys up as their messages arrive
    (pipeline/prefetch.py), several per search. Each job loads its card once."""
    stack.faults({"kind": "slow", "endpoint": "list", "delay_ms": 40})
    stack.start_worker()
    # One alone first: no backlog, it looks up for itself.
    first = stack.finished(enqueue(stack, "ahead-first", amount_cents=99))
    assert first.status is JobStatus.SUCCEEDED
    ids = [enqueue(stack, f"ahead-{i}", amount_cents=100 + i) for i in range(24)]
    for job_id in ids:
        assert stack.finished(job_id).status is JobStatus.SUCCEEDED
        assert len(stack.published(job_id)) == 1
    assert sorted(e["amount_cents"] for e in stack.ledger()) == [99] + [100 + i for i in range(24)]
    assert len(stack.sandbox.world.transactions) == 25
    assert stack.sandbox.requests["list"] < 24  # several keys per search
