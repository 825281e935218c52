"""Does a deep queue slow the worker? Throughput with 100,000 jobs queued against 1,000.

For each depth: a private redis-server, a sandbox process, the jobs enqueued while no
worker runs, then one ``cardload worker`` (threads, 32) started. Throughput is measured
over the same window of completions for each depth (result events ``--skip`` to
``--skip + --window``), after the worker has warmed up; the baseline is the shallow
queue, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from stack import bench_settings, cardload_worker, queue_length, sandbox_process

from cardload.cli.localstack import redis_server
from cardload.jobs import CardLoadJob, job_store
from cardload.producers.enqueue import CardLoadProducer
from cardload.worker import create_app

CHUNK = 5000


def _when(client: redis.Redis, stream: str, count: int, timeout_s: float) -> float:
    """The moment the stream first holds ``count`` events (polled every 5 ms)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if int(client.xlen(stream)) >= count:
            return time.monotonic()
        time.sleep(0.005)
    raise SystemExit(f"fewer than {count} events after {timeout_s} s")


def run(depth: int, skip: int, window: int, log_path: Path) -> dict[str, Any]:
    with redis_server() as redis_url, sandbox_process(0) as url:
        cards = httpx.post(f"{url}/_sandbox/cards", json={"count": depth}, timeout=120).json()
        settings = bench_settings(redis_url, url)
        client = redis.Redis.from_url(redis_url)
        producer = CardLoadProducer(create_app(settings), job_store(client, settings), settings)
        jobs = [
            CardLoadJob(idempotency_key=f"depth-{i}", card_number=card, amount_cents=500)
            for i, card in enumerate(cards["cardnumbers"])
        ]
        for begin in range(0, depth, CHUNK):
            producer.enqueue_many(jobs[begin : begin + CHUNK])
        queued = queue_length(client, settings.jobs.queue)
        used_mb = int(client.info("memory")["used_memory"]) / 2**20
        stream = settings.events.stream
        with cardload_worker(settings, ["--pool=threads"], log_path):
            first = _when(client, stream, skip, 120)
            last = _when(client, stream, skip + window, 300)
        entries: Any = client.xrange(stream, count=skip + window)
        types = {e[b"type"] for _, e in entries}
        if types != {b"card_load.succeeded"}:
            raise SystemExit(f"not every load succeeded: {types}")
    return {"queued": queued, "redis_mb": used_mb, "jobs_s": window / (last - first)}


def main() -> int:
    parser = argparse.ArgumentParser(description="Worker throughput against queue depth.")
    parser.add_argument("--depths", type=int, nargs="*", default=[1000, 100_000])
    parser.add_argument("--skip", type=int, default=100, help="completions before the window")
    parser.add_argument("--window", type=int, default=800, help="completions measured")
    a = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for depth in a.depths:
            results[depth] = run(depth, a.skip, a.window, Path(tmp) / "worker.log")
            r = results[depth]
            print(
                f"{r['queued']:7d} queued ({r['redis_mb']:7.1f} MB of Redis): "
                f"{r['jobs_s']:6.1f} jobs/s over completions {a.skip}-{a.skip + a.window}",
                flush=True,
            )
    base = results[a.depths[0]]["jobs_s"]
    for depth, r in results.items():
        print(f"depth {depth:7d}: x{r['jobs_s'] / base:.2f} the first depth's throughput")
    print(json.dumps({str(d): {k: round(v, 1) for k, v in r.items()} for d, r in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
