"""Enqueueing a batch file: ``cardload batch submit``'s path against a naive loop.

The baseline (``naive_chain.py``): the same CSV read with ``csv.DictReader`` and one
``apply_async`` per row, task-sent events on, as Flower needs. cardload: the file
parsed and validated (``submit_batch``), each job admitted (its record, its key) and
its message published. Both on a fresh private redis-server; each reports jobs per
second and the Redis memory each queued job takes (``used_memory`` after minus
before, per job).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import naive_chain
import redis
from stack import queue_length

from cardload.cli.localstack import redis_server
from cardload.config import Settings
from cardload.jobs import JobStore
from cardload.producers.batch import submit_batch
from cardload.producers.enqueue import CardLoadProducer
from cardload.worker import create_app


def write_file(path: Path, rows: int) -> None:
    with path.open("w", newline="") as f:
        f.write("card_number,amount,currency,reference\n")
        for i in range(rows):
            f.write(f"92760{i:011d},5.00,EUR,payroll-2026-11-{i}\n")


def _used(client: redis.Redis) -> int:
    info: Any = client.info("memory")
    return int(info["used_memory"])


def naive(url: str, path: Path) -> tuple[float, float, int]:
    client = redis.Redis.from_url(url)
    producer = naive_chain.make_app(url)
    before = _used(client)
    begin = time.monotonic()
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            cents = int(row["amount"].replace(".", ""))
            naive_chain.enqueue_create(producer, row["card_number"], cents, row["reference"])
    elapsed = time.monotonic() - begin
    queued = int(client.llen(naive_chain.QUEUE))
    producer.close()
    return elapsed, (_used(client) - before) / queued, queued


def cardload(url: str, path: Path) -> tuple[float, float, int]:
    client = redis.Redis.from_url(url)
    settings = Settings(_env_file=None, redis_url=url)
    producer = CardLoadProducer(create_app(settings), JobStore(client), settings)
    before = _used(client)
    begin = time.monotonic()
    result = submit_batch(producer, path)
    elapsed = time.monotonic() - begin
    queued = queue_length(client, settings.jobs.queue)
    if result.enqueued != queued or result.invalid:
        raise SystemExit(f"enqueued {result.enqueued}, queued {queued}, {result.invalid[:3]}")
    return elapsed, (_used(client) - before) / queued, queued


def main() -> int:
    parser = argparse.ArgumentParser(description="Enqueue a batch file: cardload vs naive.")
    parser.add_argument("--rows", type=int, default=100_000)
    a = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "batch.csv"
        write_file(path, a.rows)
        for name, run in (("naive", naive), ("cardload", cardload)):
            with redis_server() as url:
                seconds, per_job, queued = run(url, path)
            results[name] = {"jobs_s": queued / seconds, "bytes_per_job": per_job}
            print(
                f"{name:9} {queued} jobs in {seconds:6.2f} s: {queued / seconds:7.0f} jobs/s, "
                f"{per_job:6.0f} bytes of Redis per queued job",
                flush=True,
            )
    ratio = results["cardload"]["jobs_s"] / results["naive"]["jobs_s"]
    print(f"cardload x{ratio:.2f} the naive loop's rate")
    print(json.dumps({k: {f: round(v) for f, v in r.items()} for k, r in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
