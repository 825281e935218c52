"""Enqueueing a 10,000-row batch: pipelined admission and batched publishing against
the baseline of one job at a time, both measured in the same run on a private
redis-server."""

from __future__ import annotations

import argparse
import json
import sys
import time

import redis

from cardload.cli.localstack import redis_server
from cardload.config import Settings
from cardload.jobs import CardLoadJob, JobStore
from cardload.producers.enqueue import CardLoadProducer
from cardload.worker import create_app


def _jobs(prefix: str, n: int) -> list[CardLoadJob]:
    return [
        CardLoadJob(idempotency_key=f"{prefix}-{i}", card_number=f"92760{i:011d}", amount_cents=500)
        for i in range(n)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description="Enqueue throughput: pipelined vs one by one.")
    parser.add_argument("--jobs", type=int, default=10_000)
    a = parser.parse_args()
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        settings = Settings(_env_file=None, redis_url=url)
        producer = CardLoadProducer(create_app(settings), JobStore(client), settings)

        naive_jobs = _jobs("naive", a.jobs)
        start = time.monotonic()
        for job in naive_jobs:
            producer.enqueue(job)
        naive = a.jobs / (time.monotonic() - start)

        batched_jobs = _jobs("batched", a.jobs)
        start = time.monotonic()
        for i in range(0, a.jobs, 1000):
            producer.enqueue_many(batched_jobs[i : i + 1000])
        batched = a.jobs / (time.monotonic() - start)
        assert client.llen("cardload") == 2 * a.jobs
    print(f"{a.jobs} jobs each way, private redis-server")
    print(f"one at a time (baseline)  {naive:8.0f} jobs/s  x1.00")
    print(f"pipelined + batch publish {batched:8.0f} jobs/s  x{batched / naive:.2f}")
    print(json.dumps({"one_at_a_time": round(naive), "pipelined": round(batched)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
