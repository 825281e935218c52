"""What a card load costs the worker: ``cardload worker`` against the naive Celery
chain (``naive_chain.py``, the baseline), measured side by side in one run.

For each added API latency and each run, both get a fresh private redis-server and a
sandbox process adding that latency to every call, the same pool and concurrency
(threads, 32), a worker started and ready before the clock starts, and ``--jobs``
card loads enqueued at once. The clock stops when the last load is done (cardload:
its result event is in the stream; the baseline: the sandbox has booked every load).
CPU is user + system seconds of the worker's processes over that time, per job: far
steadier than wall time on a shared machine. The order of the two alternates from run
to run, so drift of the machine falls on both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import naive_chain
from stack import (
    Measured,
    run_batch,
    sandbox_process,
    session_cpu_s,
    session_peak_rss_mb,
    start,
    stop,
)

from cardload.cli.localstack import redis_server, wait_for

BENCH = Path(__file__).parent


def _loads(url: str) -> int:
    return int(httpx.get(f"{url}/_sandbox/stats").json()["loads"])


def run_naive(jobs: int, latency_ms: int, concurrency: int, log_path: Path) -> Measured:
    with redis_server() as redis_url, sandbox_process(latency_ms) as url:
        cards = httpx.post(f"{url}/_sandbox/cards", json={"count": jobs}).json()["cardnumbers"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARDLOAD_")}
        env |= {"NAIVE_BROKER_URL": redis_url, "NAIVE_API_URL": url}
        env["PYTHONPATH"] = os.pathsep.join([str(BENCH), env.get("PYTHONPATH", "")])
        command = [
            *(sys.executable, "-m", "celery", "-A", "naive_chain", "worker"),
            *("--pool=threads", f"--concurrency={concurrency}", "--task-events"),
            *("--without-mingle", "--without-gossip", "-Q", naive_chain.QUEUE, "-l", "WARNING"),
        ]
        producer = naive_chain.make_app(redis_url)
        with log_path.open("w") as log:
            worker = start(command, cwd=BENCH, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_for(lambda: producer.control.ping(timeout=0.5), 60, "naive worker")
                before = httpx.get(f"{url}/_sandbox/stats").json()["requests"]
                cpu_before = session_cpu_s(worker.pid)
                begin = time.monotonic()
                for i, card in enumerate(cards):
                    naive_chain.load(producer, card, 500, f"naive-{i}")
                wait_for(lambda: _loads(url) >= jobs, 600, "naive loads")
                elapsed = time.monotonic() - begin
                cpu = session_cpu_s(worker.pid) - cpu_before
                rss = session_peak_rss_mb(worker.pid)
                after = httpx.get(f"{url}/_sandbox/stats").json()["requests"]
            finally:
                stop(worker)
                producer.close()
        requests = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        return Measured(jobs, elapsed, cpu, requests, rss)


def run_cardload(jobs: int, latency_ms: int, concurrency: int, log_path: Path) -> Measured:
    args = ["--pool=threads", f"--concurrency={concurrency}"]
    return run_batch(args, jobs, latency_ms, log_path)


def main() -> int:
    parser = argparse.ArgumentParser(description="Worker CPU per card load against a naive chain.")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--latency-ms", type=int, nargs="*", default=[0, 50], help="added to every API call"
    )
    a = parser.parse_args()
    report: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for latency in a.latency_ms:
            rows = report.setdefault(f"{latency} ms", {})
            for run in range(a.runs):
                order = ["naive", "cardload"] if run % 2 == 0 else ["cardload", "naive"]
                got: dict[str, Measured] = {}
                for name in order:
                    runner = run_naive if name == "naive" else run_cardload
                    got[name] = runner(a.jobs, latency, a.concurrency, Path(tmp) / f"{name}.log")
                n, c = got["naive"], got["cardload"]
                for key, value in {
                    "naive_cpu_ms": n.cpu_ms_per_job,
                    "cardload_cpu_ms": c.cpu_ms_per_job,
                    "cpu_ratio": c.cpu_ms_per_job / n.cpu_ms_per_job,
                    "naive_jobs_s": n.jobs_per_s,
                    "cardload_jobs_s": c.jobs_per_s,
                    "throughput_ratio": c.jobs_per_s / n.jobs_per_s,
                    "naive_rss_mb": n.worker_peak_rss_mb,
                    "cardload_rss_mb": c.worker_peak_rss_mb,
                    "cardload_api_calls": sum(c.api_requests.values()) / c.jobs,
                }.items():
                    rows.setdefault(key, []).append(value)
                last = {k: round(v[-1], 2) for k, v in rows.items()}
                print(f"{latency:3d} ms run {run + 1}: {last}", flush=True)
    print(f"\n{a.jobs} jobs per run, threads -c {a.concurrency}; medians of {a.runs} runs")
    for latency, rows in report.items():
        med = {k: statistics.median(v) for k, v in rows.items()}
        print(
            f"{latency:>6}: CPU/job x{med['cpu_ratio']:.2f} "
            f"({med['cardload_cpu_ms']:.1f} vs {med['naive_cpu_ms']:.1f} ms), "
            f"throughput x{med['throughput_ratio']:.2f} "
            f"({med['cardload_jobs_s']:.1f} vs {med['naive_jobs_s']:.1f} jobs/s)"
        )
    print(
        json.dumps(
            {lat: {k: [round(x, 2) for x in v] for k, v in r.items()} for lat, r in report.items()}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
