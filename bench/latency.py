"""Latency from enqueue to result event at low load: one job at a time.

One private redis-server, a sandbox process adding ``--latency-ms`` to every API call,
one ``cardload worker`` ready before the clock starts. Each job is enqueued alone and
timed until its ``card_load.succeeded`` event is in the stream (``XREAD BLOCK``). The
baseline, measured in the same run against the same sandbox: the API calls a job
makes (lookup, create, start), one after the other from one kept-alive client.
Target: p50 at most twice the calls' p50 plus 15 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import naive_chain
import redis
from stack import bench_settings, cardload_worker, sandbox_process

from cardload.cli.localstack import redis_server, wait_for
from cardload.config import Settings
from cardload.jobs import CardLoadJob, job_store
from cardload.producers.enqueue import CardLoadProducer
from cardload.worker import create_app

TX = naive_chain.TX


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def api_calls_ms(url: str, cards: list[str]) -> list[float]:
    """The job's calls in a row, as the worker makes them: lookup, create, start."""
    out = []
    with httpx.Client(base_url=url, timeout=30) as http:
        token = http.post("/oauth/token", json=naive_chain.CREDENTIALS).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        for i, card in enumerate(cards):
            ref = f"api-{i}"
            begin = time.monotonic()
            q = f'merchantRef:"{ref}"'
            params: dict[str, str | int] = {"q": q, "count": 100, "sort": "created:asc"}
            http.get(TX, params=params, headers=auth).raise_for_status()
            tx = http.post(TX, json=naive_chain.body(card, 500, ref), headers=auth)
            http.post(f"{TX}/{tx.json()['id']}/start/cash", headers=auth).raise_for_status()
            out.append((time.monotonic() - begin) * 1000)
    return out


def job_latencies_ms(settings: Settings, cards: list[str]) -> list[float]:
    app = create_app(settings)
    wait_for(lambda: app.control.ping(timeout=0.5), 60, "worker")
    client = redis.Redis.from_url(settings.redis_url)
    producer = CardLoadProducer(app, job_store(client, settings), settings)
    stream, last = settings.events.stream, "0-0"
    out = []
    for i, card in enumerate(cards):
        job = CardLoadJob(idempotency_key=f"latency-{i}", card_number=card, amount_cents=500)
        begin = time.monotonic()
        producer.enqueue(job)
        got: Any = client.xread({stream: last}, count=1, block=30_000)
        if not got:
            raise SystemExit(f"no event for job {i} within 30 s")
        last = got[0][1][0][0]
        out.append((time.monotonic() - begin) * 1000)
        if got[0][1][0][1][b"type"] != b"card_load.succeeded":
            raise SystemExit(f"job {i} did not succeed")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="Enqueue-to-event latency, one job at a time.")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, nargs="*", default=[0, 50])
    a = parser.parse_args()
    report: dict[str, dict[str, float]] = {}
    for latency in a.latency_ms:
        with (
            tempfile.TemporaryDirectory() as tmp,
            redis_server() as redis_url,
            sandbox_process(latency) as url,
        ):
            cards = httpx.post(f"{url}/_sandbox/cards", json={"count": a.jobs}).json()
            cards = cards["cardnumbers"]
            api = api_calls_ms(url, cards[: min(50, a.jobs)])
            settings = bench_settings(redis_url, url)
            log = Path(tmp) / "worker.log"
            with cardload_worker(settings, ["--pool=threads"], log):
                jobs = job_latencies_ms(settings, cards)
        api_p50 = statistics.median(api)
        row = {
            "api_calls_p50_ms": api_p50,
            "p50_ms": percentile(jobs, 50),
            "p90_ms": percentile(jobs, 90),
            "p99_ms": percentile(jobs, 99),
            "target_p50_ms": 2 * api_p50 + 15,
        }
        report[f"{latency} ms"] = row
        print(
            f"{latency:3d} ms added: API calls p50 {api_p50:6.1f} ms; enqueue→event "
            f"p50 {row['p50_ms']:6.1f}, p90 {row['p90_ms']:6.1f}, p99 {row['p99_ms']:6.1f} ms "
            f"(target p50 ≤ {row['target_p50_ms']:.1f} ms)",
            flush=True,
        )
    print(json.dumps({k: {f: round(v, 1) for f, v in r.items()} for k, r in report.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
