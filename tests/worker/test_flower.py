"""Flower watching a real worker: it sees every task, and never a full card number."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from cardload.jobs import CardLoadJob, JobStatus
from cardload.sandbox import GIFT_CARD, SEED_CARD
from tests.services import free_port, scratch_dir, wait_for
from tests.worker.conftest import Stack


@contextmanager
def flower_process(stack: Stack) -> Iterator[str]:
    """Flower on the stack's broker, its event receiver listening (warmed up on
    GIFT_CARD loads); its URL. Stopped afterwards."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDLOAD_")}
    env |= stack.env | {"FLOWER_UNAUTHENTICATED_API": "true"}
    log = (stack.tmp_path / "flower.log").open("w")
    argv = [sys.executable, "-m", "celery", "-A", "cardload.worker", "flower"]
    proc = subprocess.Popen(
        [*argv, f"--port={port}", "--address=127.0.0.1"],
        cwd=scratch_dir(),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthcheck").status_code == 200
        except httpx.TransportError:
            return False

    warm_ups = iter(range(1000))

    def listening() -> bool:
        # Healthy is not enough: its event receiver connects a moment later, and the
        # events of a job done before that are gone (pub/sub). A warm-up job each try,
        # until Flower has seen one.
        key = f"warm-up-{next(warm_ups)}"
        warm_up = CardLoadJob(idempotency_key=key, card_number=GIFT_CARD, amount_cents=100)
        stack.finished(stack.producer.enqueue(warm_up))
        return bool(httpx.get(f"{url}/api/tasks").json())

    try:
        wait_for(healthy, 60, "flower")
        wait_for(listening, 60, "flower to receive events")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
        log.close()


@pytest.fixture
def flower(running: Stack) -> Iterator[str]:
    with flower_process(running) as url:
        yield url


def test_flower_sees_the_chain_with_masked_card_numbers(running: Stack, flower: str) -> None:
    job = CardLoadJob(idempotency_key="flower-1", card_number=SEED_CARD, amount_cents=2000)
    job_id = running.producer.enqueue(job)
    assert running.finished(job_id).status is JobStatus.SUCCEEDED

    def both_tasks() -> dict[str, Any] | None:
        every: dict[str, Any] = httpx.get(f"{flower}/api/tasks").json()
        tasks = {k: t for k, t in every.items() if job_id in str(t.get("args"))}
        done = [t for t in tasks.values() if t.get("state") == "SUCCESS"]
        return tasks if len(done) >= 2 else None

    # Two tasks: the result event is written with the success, by the start task.
    tasks = wait_for(both_tasks, 30, "flower to see the create and start tasks")
    names = sorted(t["name"] for t in tasks.values())
    assert names == ["cardload.create", "cardload.start"]
    create = next(t for t in tasks.values() if t["name"] == "cardload.create")
    start = next(t for t in tasks.values() if t["name"] == "cardload.start")
    assert job_id in create["args"] and "927600******4352" in create["args"]
    # Both seen queued (task-sent: the producer's batch, the worker's buffered events),
    # the start as the create's child.
    assert create["sent"] and start["sent"]
    assert start["parent_id"] == create["uuid"] and start["root_id"] == create["uuid"]
    everything = httpx.get(f"{flower}/api/tasks").text + httpx.get(f"{flower}/api/workers").text
    assert SEED_CARD not in everything
    assert "sandbox-secret" not in everything
    assert "flower_events_total" in httpx.get(f"{flower}/metrics").text
