"""Prometheus metrics scraped from a real worker (``--metrics-port``) and from the HTTP
API's ``/metrics`` after real jobs: the counts are the jobs' own."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cardload.cli.localstack import free_port
from cardload.jobs import CardLoadJob, JobStatus
from cardload.observability.metrics import NAMES
from cardload.sandbox import LOCKED_CARD, SEED_CARD
from tests.services import wait_for
from tests.worker.conftest import Stack


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return _samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)


def test_a_workers_metrics_count_its_jobs(stack: Stack) -> None:
    port = free_port()
    worker = stack.start_worker("--metrics-port", str(port))
    stack.faults({"kind": "error_503", "endpoint": "start", "times": 1})
    jobs = [
        CardLoadJob(idempotency_key=f"metrics-{i}", card_number=SEED_CARD, amount_cents=100 + i)
        for i in range(3)
    ]
    ids = [stack.producer.enqueue(job) for job in jobs]
    locked = CardLoadJob(idempotency_key="metrics-locked", card_number=LOCKED_CARD, amount_cents=1)
    ids.append(stack.producer.enqueue(locked))
    records = [stack.finished(job_id) for job_id in ids]
    assert [r.status for r in records] == [JobStatus.SUCCEEDED] * 3 + [JobStatus.DEAD_LETTERED]

    # Counted just after the record is written: wait for the last count to land.
    def counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        samples = _scrape(port)
        done = _value(samples, "cardload_jobs_total", outcome="succeeded") == 3
        return samples if done else None

    samples = wait_for(counted, 10, "the metrics of four finished jobs")
    assert _value(samples, "cardload_jobs_total", outcome="dead_lettered") == 1
    assert _value(samples, "cardload_step_attempts_total", step="create") == 4
    assert _value(samples, "cardload_step_attempts_total", step="start") == 4  # one retried
    assert _value(samples, "cardload_step_retries_total", step="start", reason="ambiguous") == 1
    api = "cardload_api_call_duration_seconds_count"
    assert _value(samples, api, endpoint="create", status="200") == 3
    assert _value(samples, api, endpoint="create", status="400") == 1  # the locked card
    assert _value(samples, api, endpoint="start", status="503") == 1  # a POST: ambiguous
    assert _value(samples, api, endpoint="get", status="200") == 1  # so read before again
    assert _value(samples, api, endpoint="start", status="200") == 3
    assert _value(samples, api, endpoint="token", status="200") == 1
    assert _value(samples, "cardload_token_fetches_total", outcome="ok") == 1
    duration = "cardload_step_duration_seconds_count"
    assert _value(samples, duration, step="start", outcome="finished") == 3
    assert _value(samples, duration, step="create", outcome="finished") == 1  # dead-lettered
    # Read from Redis and the broker at the scrape.
    assert _value(samples, "cardload_dead_letters") == 1
    assert _value(samples, "cardload_jobs_active") == 0
    assert _value(samples, "cardload_queue_depth", queue=stack.settings.jobs.queue) == 0

    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert SEED_CARD not in text and LOCKED_CARD not in text
    secret = stack.settings.secuconnect.client_secret
    assert secret is not None and secret.get_secret_value() not in text
    families = text_string_to_metric_families(text)
    # prometheus_client adds a "<name>_created" timestamp to each counter and histogram.
    names = {f.name for f in families if f.name.startswith("cardload")}
    names = {n for n in names if not n.endswith("_created")}
    # Every family served is a documented name (counters list as name + "_total").
    assert {n if n in NAMES else n + "_total" for n in names} <= NAMES
    assert worker.proc.poll() is None
