"""Producers against a real Redis broker (no worker): what lands in the queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from cardload.config import Settings, to_env
from cardload.jobs import CardLoadJob, IdempotencyConflict, JobStatus, JobStore
from cardload.producers.batch import submit_batch
from cardload.producers.enqueue import (
    AmountLimitError,
    BrokerUnavailable,
    CardLoadProducer,
    enqueue_card_load,
)
from cardload.worker import create_app, dispatch
from tests.services import run_cli, scratch_dir
from tests.support import make_settings, queued

CARD = "9276004424644352"


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return make_settings(redis_url, "http://127.0.0.1:9")


@pytest.fixture
def producer(real_redis: redis.Redis, settings: Settings) -> CardLoadProducer:
    return CardLoadProducer(create_app(settings), JobStore(real_redis), settings)


def test_enqueue_card_load_is_idempotent(
    producer: CardLoadProducer, real_redis: redis.Redis
) -> None:
    job_id = enqueue_card_load(
        card_number=CARD,
        amount_cents=2000,
        idempotency_key="order-77",
        source={"order_id": "77"},
        producer=producer,
    )
    assert (
        enqueue_card_load(
            card_number=CARD, amount_cents=2000, idempotency_key="order-77", producer=producer
        )
        == job_id
    )
    with pytest.raises(IdempotencyConflict):
        enqueue_card_load(
            card_number=CARD, amount_cents=2500, idempotency_key="order-77", producer=producer
        )
    messages = queued(real_redis)
    assert len(messages) == 1
    message = json.loads(messages[0])
    assert message["headers"]["task"] == "cardload.create"
    assert (
        job_id in message["headers"]["argsrepr"]
        and "927600******4352" in message["headers"]["argsrepr"]
    )
    assert CARD.encode() not in messages[0]  # neither in the body nor in Flower's argsrepr


def test_the_python_api_requires_a_key(producer: CardLoadProducer, real_redis: redis.Redis) -> None:
    """A key made up per call would be new on a caller's retry: a second load."""
    call: Any = enqueue_card_load
    with pytest.raises(TypeError, match="idempotency_key"):
        call(card_number=CARD, amount_cents=100, producer=producer)
    assert queued(real_redis) == []
    # The caller retries after a timeout with the same key: the first job, not a second.
    first = enqueue_card_load(
        card_number=CARD, amount_cents=100, idempotency_key="order-9", producer=producer
    )
    retried = enqueue_card_load(
        card_number=CARD, amount_cents=100, idempotency_key="order-9", producer=producer
    )
    assert first == retried and len(queued(real_redis)) == 1


def test_a_producer_on_the_host_app_sends_to_cardload_queue(
    settings: Settings, real_redis: redis.Redis
) -> None:
    """An order system hands its own app over: the messages still go to cardload's
    queue, not to the host's default one, where no cardload worker listens."""
    from celery import Celery

    host = Celery("host", broker=settings.redis_url, set_as_current=False)
    host.conf.task_default_queue = "host"
    producer = CardLoadProducer(host, JobStore(real_redis), settings)
    enqueue_card_load(card_number=CARD, amount_cents=100, idempotency_key="h1", producer=producer)
    assert len(queued(real_redis)) == 1 and real_redis.llen("host") == 0


def test_amount_limit(producer: CardLoadProducer) -> None:
    with pytest.raises(AmountLimitError):
        enqueue_card_load(
            card_number=CARD, amount_cents=50_001, idempotency_key="big", producer=producer
        )


def test_a_job_admitted_but_never_sent_is_sent_on_the_next_enqueue(
    producer: CardLoadProducer, real_redis: redis.Redis
) -> None:
    from cardload.jobs import CardLoadJob

    job = CardLoadJob(idempotency_key="crashed", card_number=CARD, amount_cents=100)
    producer.store.admit(job)  # as if the producer died before sending
    assert queued(real_redis) == []
    assert (
        enqueue_card_load(
            card_number=CARD, amount_cents=100, idempotency_key="crashed", producer=producer
        )
        == job.job_id
    )
    assert len(queued(real_redis)) == 1
    enqueue_card_load(
        card_number=CARD, amount_cents=100, idempotency_key="crashed", producer=producer
    )
    assert len(queued(real_redis)) == 1


def test_ten_thousand_rows_and_a_resubmission(
    producer: CardLoadProducer, real_redis: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "payroll.csv"
    rows = [f"92760{i:011d},{i % 90 + 1}.{i % 100:02d},EUR,emp-{i}" for i in range(10_000)]
    path.write_text(
        "card_number,amount,currency,reference\n" + "\n".join(rows) + "\n9276,1,EUR,bad\n"
    )
    seen: list[tuple[int, int]] = []
    first = submit_batch(producer, path, lambda done, total: seen.append((done, total)))
    assert (first.rows, first.enqueued, first.already_known) == (10_001, 10_000, 0)
    assert [(e.row, e.field) for e in first.invalid] == [(10_001, "card_number")]
    assert seen[-1] == (10_000, 10_000)
    assert len(queued(real_redis)) == 10_000
    again = submit_batch(producer, path)
    assert (again.batch_id, again.enqueued, again.already_known) == (first.batch_id, 0, 10_000)
    assert len(queued(real_redis)) == 10_000  # nothing new sent


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(settings, *args)


def test_cli_enqueue_job_and_batch(
    settings: Settings, real_redis: redis.Redis, tmp_path: Path
) -> None:
    done = _cli(
        settings, "enqueue", "--card", CARD, "--amount", "20.00", "--key", "cli-1", "--json"
    )
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["job_id"]
    again = _cli(settings, "enqueue", "--card", CARD, "--amount", "20.00", "--key", "cli-1")
    assert again.stdout.startswith(f"already enqueued job {job_id}")
    bad = _cli(settings, "enqueue", "--card", CARD, "--amount", "20.005")
    assert bad.returncode == 2 and "fractions of a cent" in bad.stderr
    typo = _cli(settings, "enqueue", "--card", "9276-0044-2464-4352", "--amount", "20.00")
    assert typo.returncode == 2 and "card_number" in typo.stderr
    assert "0044" not in typo.stderr  # a refused card number is not echoed back
    # Without --key the CLI makes one and prints it, so the command can be repeated safely.
    fresh = _cli(settings, "enqueue", "--card", CARD, "--amount", "1.00")
    key = fresh.stdout.split("to repeat this command safely, add: --key ")[1].strip()
    repeated = _cli(settings, "enqueue", "--card", CARD, "--amount", "1.00", "--key", key)
    assert repeated.stdout.startswith("already enqueued job")

    shown = _cli(settings, "job", job_id, "--json")
    view = json.loads(shown.stdout)
    assert (view["status"], view["card_number"], view["amount_cents"]) == (
        JobStatus.QUEUED.value,
        "927600******4352",
        2000,
    )
    assert "927600******4352" in _cli(settings, "job", job_id).stdout

    batch = tmp_path / "b.csv"
    batch.write_text(
        "card_number,amount,currency,reference\n9276000000000003,5.00,EUR,g1\n9276000000000003,5.001,EUR,g2\n"
    )
    submitted = _cli(settings, "batch", "submit", str(batch))
    assert submitted.returncode == 1  # some rows were invalid
    assert "2    amount  '5.001' has fractions of a cent" in submitted.stdout
    batch_id = submitted.stdout.split()[1]
    resubmitted = _cli(settings, "batch", "submit", str(batch), "--json")
    assert json.loads(resubmitted.stdout)["enqueued"] == 0
    status = json.loads(_cli(settings, "batch", "status", batch_id, "--json").stdout)
    assert (
        status["by_status"] == {"queued": 1} and status["invalid"] == 1 and not status["finished"]
    )
    report = tmp_path / "report.csv"
    assert _cli(settings, "batch", "report", batch_id, "--out", str(report)).returncode == 0
    lines = report.read_text().splitlines()
    assert lines[0].startswith("row,outcome,card_number,amount_cents")
    assert lines[1].startswith("1,queued,927600******0003,500,EUR")
    assert lines[2].startswith("2,invalid,") and "fractions of a cent" in lines[2]
    assert _cli(settings, "batch", "status", "batch_nope").returncode == 1
    assert _cli(settings, "events", "tail").stdout == ""
    assert _cli(settings, "dlq", "list").stdout.strip() == "(none)"


def append(stream: Any, event: Any) -> None:
    """As the job store's scripts append a result event."""
    stream.redis.xadd(
        stream.name,
        {"event_id": event.event_id, "type": event.type, "data": event.model_dump_json()},
    )


def test_events_tail_follow(settings: Settings, real_redis: redis.Redis) -> None:
    from datetime import UTC, datetime

    from cardload.events import CardLoadSucceeded, EventBalances, EventReceipt, EventStream
    from cardload.jobs import JobSource

    now = datetime.now(UTC)
    stream = EventStream(real_redis, settings.events.stream)

    def publish(job_id: str) -> None:
        append(
            stream,
            CardLoadSucceeded(
                event_id=f"{job_id}:succeeded",
                occurred_at=now,
                job_id=job_id,
                idempotency_key=job_id,
                source=JobSource(),
                card_number="927600******4352",
                amount_cents=100,
                currency="EUR",
                attempts={},
                enqueued_at=now,
                transaction_id="STX_1",
                status="ok",
                balances=EventBalances(cash_cents=1, bonus_cents=0, total_cents=1),
                receipt=EventReceipt(lines=[], text=""),
                finished_at=now,
            ),
        )

    publish("before")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDLOAD_")} | to_env(settings)
    command = [sys.executable, "-m", "cardload.cli.main", "events", "tail", "--follow", "--json"]
    with subprocess.Popen(
        command, cwd=scratch_dir(), env=env, stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["job_id"] == "before"  # the tail
            publish("after")  # the tail is printed: only following can show this one
            assert json.loads(proc.stdout.readline())["job_id"] == "after"
        finally:
            proc.terminate()


def test_a_fixed_and_resaved_batch_enqueues_only_what_is_new(
    settings: Settings, real_redis: redis.Redis, tmp_path: Path
) -> None:
    """An operator fixes the row the CLI flagged, and the file is saved again with
    Windows line ends, a BOM and its rows in another order: only the fixed row is new."""
    header = "card_number,amount,currency,reference"
    rows = [
        "9276000000000003,10.00,EUR,",
        "9276000000000003,10.00,EUR,",  # the same top-up twice on purpose: two loads
        "9276000000000004,12.50,EUR,",
        "9276004424644352,abc,EUR,",
        "9276004424644352,20.00,EUR,emp-2026-11-1",
    ]
    path = tmp_path / "gifts.csv"
    path.write_text("\n".join([header, *rows]) + "\n")

    unnamed = _cli(settings, "batch", "submit", str(path), "--json")
    result = json.loads(unnamed.stdout)
    assert unnamed.returncode == 1 and result["enqueued"] == 1  # the row with a reference
    assert [(e["row"], e["field"]) for e in result["invalid"]] == [
        (1, "reference"),
        (2, "reference"),
        (3, "reference"),
        (4, "amount"),
    ]
    assert "--name" in result["invalid"][0]["reason"]

    def submit() -> tuple[int, dict[str, Any]]:
        done = _cli(settings, "batch", "submit", str(path), "--name", "gifts-2026-11", "--json")
        return done.returncode, json.loads(done.stdout)

    code, named = submit()
    assert code == 1 and (named["enqueued"], named["already_enqueued"]) == (3, 1)
    assert named["batch_id"] == "gifts-2026-11"
    fixed = [*rows[:3], "9276004424644352,7.00,EUR,", rows[4]]
    path.write_bytes(("\ufeff" + "\r\n".join([header, *reversed(fixed)]) + "\r\n").encode())
    code, again = submit()
    assert code == 0 and again["invalid"] == []
    assert (again["enqueued"], again["already_enqueued"]) == (1, 4)
    assert len(queued(real_redis)) == 5  # five loads, each sent once
    assert _cli(settings, "batch", "submit", str(path), "--name", "gifts-2026-11").returncode == 0
    assert len(queued(real_redis)) == 5
    status = json.loads(_cli(settings, "batch", "status", "gifts-2026-11", "--json").stdout)
    assert status["by_status"] == {"queued": 5} and status["invalid"] == 0


def test_a_reference_added_to_a_named_batch_names_the_same_load_everywhere(
    settings: Settings, real_redis: redis.Redis, tmp_path: Path
) -> None:
    """Rows first submitted without references under a batch name, then with references
    (matched to their jobs by content), then the referenced file on its own, or under
    another name: one load per row, whichever way the file comes back."""
    path = tmp_path / "payroll.csv"
    header = "card_number,amount,currency,reference\n"
    path.write_text(header + "9276000000000003,10.00,EUR,\n9276000000000004,12.50,EUR,\n")

    def submit(*extra: str) -> dict[str, Any]:
        done = _cli(settings, "batch", "submit", str(path), "--json", *extra)
        assert done.returncode == 0, done.stdout + done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    assert submit("--name", "payroll-2026-11")["enqueued"] == 2
    path.write_text(
        header
        + "9276000000000003,10.00,EUR,2026-11-emp-1\n9276000000000004,12.50,EUR,2026-11-emp-2\n"
    )
    assert submit("--name", "PAYROLL-2026-11")["already_enqueued"] == 2  # the same batch
    assert submit()["already_enqueued"] == 2  # the references name those loads now
    assert submit("--name", "payroll-2026-11-again")["already_enqueued"] == 2
    assert len(queued(real_redis)) == 2


def test_a_batch_that_fails_part_way_is_reported_and_sent_again(
    producer: CardLoadProducer, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second pipelined batch of messages fails: the caller is told the broker is
    unavailable (not kombu's own error), and enqueueing the same keys again sends every
    job whose message may not have left; none is lost."""
    monkeypatch.setattr(dispatch, "BATCH_SIZE", 2)
    execute = redis.client.Pipeline.execute
    pushes = [0]

    def second_push_fails(pipe: Any, *args: Any, **kwargs: Any) -> Any:
        if any(command[0][0] == "LPUSH" for command in pipe.command_stack):
            pushes[0] += 1
            if pushes[0] == 2:
                raise redis.ConnectionError("the broker went away")
        return execute(pipe, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", second_push_fails)
    jobs = [
        CardLoadJob(idempotency_key=f"part-{i}", card_number=CARD, amount_cents=100)
        for i in range(5)
    ]
    with pytest.raises(BrokerUnavailable, match="admitted but maybe not sent"):
        producer.enqueue_many(jobs)
    assert len(queued(real_redis)) == 2  # the first batch went out
    monkeypatch.setattr(redis.client.Pipeline, "execute", execute)
    producer.enqueue_many(jobs)
    sent = [json.loads(m)["headers"]["argsrepr"] for m in queued(real_redis)]
    assert all(any(job.job_id in s for s in sent) for job in jobs)
