"""Webhooks with real parts: a worker loading cards through the sandbox, its result
events delivered to a receiver in this test that checks every signature. Exactly one
delivery processed per event when the receiver fails the first attempts, and when the
delivery worker is SIGKILLed mid-run (the only repeats: deliveries it had under way)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardload.config import Settings, WebhookSettings, to_env
from cardload.jobs import CardLoadJob
from cardload.sandbox import LOCKED_CARD, SEED_CARD
from tests.services import run_cli, scratch_dir, wait_for
from tests.webhooks.receiver import Receiver, receiving
from tests.worker.conftest import Stack


def hook_settings(stack: Stack, **webhooks: object) -> Settings:
    section = {
        "allow_loopback": True,
        "base_backoff_s": 0.05,
        "max_backoff_s": 0.2,
        "claim_idle_s": 2.0,
        "timeout_s": 1.0,
    } | webhooks
    return stack.settings.model_copy(update={"webhooks": WebhookSettings.model_validate(section)})


def register(settings: Settings, receiver: Receiver) -> str:
    made = run_cli(settings, "webhooks", "add", "--url", receiver.url, "--json")
    assert made.returncode == 0, made.stderr
    endpoint = json.loads(made.stdout)
    receiver.secret = endpoint["secret"]
    assert endpoint["secret"] not in run_cli(settings, "webhooks", "list").stdout
    return str(endpoint["id"])


def enqueue(stack: Stack, count: int, prefix: str) -> list[str]:
    jobs = [
        CardLoadJob(
            idempotency_key=f"{prefix}-{i}",
            card_number=LOCKED_CARD if i == 0 else SEED_CARD,  # one fails: its event too
            amount_cents=100 + i,
        )
        for i in range(count)
    ]
    return [stack.producer.enqueue(job) for job in jobs]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving(Receiver()) as running:
        yield running


def test_each_event_is_delivered_once_though_the_first_tries_fail(
    stack: Stack, receiver: Receiver
) -> None:
    settings = hook_settings(stack)
    register(settings, receiver)
    receiver.fail_first = 2
    stack.start_worker(settings=settings)  # delivers from a thread of its own
    job_ids = enqueue(stack, 6, "hooked")
    wait_for(lambda: len(receiver.processed) == 6, 60, "six processed deliveries")
    time.sleep(1.0)  # past every backoff: anything more would show now
    events = {e.event.event_id: e for e in stack.events.read()}
    assert sorted(receiver.processed) == sorted(events)
    assert {e.split(":")[0] for e in receiver.processed} == set(job_ids)
    assert set(receiver.deliveries.values()) == {3}  # two refused, one taken
    assert set(receiver.acknowledged.values()) == {1}
    assert receiver.bad_signatures == 0
    failed = [e for e in events.values() if e.event.type == "card_load.failed"]
    assert len(failed) == 1
    body = json.loads(receiver.bodies[failed[0].event.event_id])
    assert body["type"] == "card_load.failed" and body["card_number"] == "927600******0001"
    assert SEED_CARD not in b"".join(receiver.bodies.values()).decode()


class DeliveryProcess:
    """``cardload webhooks run`` as an operator runs it."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARDLOAD_")}
        env |= to_env(settings) | {"PYTHONUNBUFFERED": "1"}
        self.log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cardload.cli.main", "webhooks", "run"],
            cwd=scratch_dir(),
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self.log.close()


def test_a_killed_delivery_worker_loses_nothing_and_repeats_only_what_was_under_way(
    stack: Stack, receiver: Receiver
) -> None:
    settings = hook_settings(stack, in_worker=False)
    register(settings, receiver)
    receiver.delay_s = 0.3  # deliveries take a while: the kill finds some under way
    stack.start_worker(settings=settings)
    first = DeliveryProcess(settings, stack.tmp_path / "deliver-1.log")
    second: DeliveryProcess | None = None
    try:
        job_ids = enqueue(stack, 30, "killed")
        wait_for(lambda: len(receiver.processed) >= 5, 60, "the first deliveries")
        with receiver.lock:
            under_way = set(receiver.in_flight)
            done_before = len(receiver.processed)
        killed_at = time.monotonic()
        first.kill()
        second = DeliveryProcess(settings, stack.tmp_path / "deliver-2.log")
        wait_for(lambda: len(receiver.processed) == 30, 90, "every event delivered")
        time.sleep(1.0)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert {e.split(":")[0] for e in receiver.processed} == set(job_ids)
    assert receiver.bad_signatures == 0
    assert (
        done_before < 30 and "webhook.delivered" in (stack.tmp_path / "deliver-2.log").read_text()
    )
    repeated = {e for e, n in receiver.acknowledged.items() if n > 1}
    # A repeat only of what the killed worker had under way (or had just been answered
    # and not yet recorded): everything else exactly once.
    for event_id in repeated:
        assert event_id in under_way or receiver.first_ack_at[event_id] >= killed_at - 1.0
    assert max(receiver.acknowledged.values()) <= 2
