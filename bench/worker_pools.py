"""Which Celery pool should ``cardload worker`` use? Jobs per second, measured.

Each configuration gets a fresh private redis-server and a sandbox process that adds
``--latency-ms`` to every API call (the real API is a network hop away), a worker
started and ready before the clock starts, and the same ``--jobs`` card loads,
enqueued at once. The clock stops when every job has succeeded. The baseline is
prefork with one process per core, Celery's default on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from cli.localstack import free_port, redis_server, wait_for
from config import Settings, to_env
from jobs import CardLoadJob, JobStore
from producers.enqueue import CardLoadProducer
from sandbox.settings import sandbox_settings
from worker.app import create_app

ROOT = Path(__file__).parents[1]
CONFIGS = {
    "prefork -c 2 (baseline)": ["--pool=prefork", "--concurrency=2"],
    "prefork -c 8": ["--pool=prefork", "--concurrency=8"],
    "threads -c 8": ["--pool=threads", "--concurrency=8"],
    "threads -c 32": ["--pool=threads", "--concurrency=32"],
    "threads -c 64": ["--pool=threads", "--concurrency=64"],
}


def _start(command: list[str], **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(command, text=True, start_new_session=True, **kw)


def _stop(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _settings(redis_url: str, sandbox_url: str) -> Settings:
    return sandbox_settings(redis_url, sandbox_url, log={"format": "json", "level": "WARNING"})


def run_one(worker_args: list[str], jobs: int, latency_ms: int, tmp: Path) -> float:
    with redis_server() as redis_url:
        sb_port = free_port()
        serve = ["sandbox", "serve", "--port", str(sb_port), "--latency-ms", str(latency_ms)]
        sandbox = _start(
            [sys.executable, "-m", "cli.main", *serve], cwd=ROOT, stdout=subprocess.DEVNULL
        )
        worker = None
        try:
            url = f"http://127.0.0.1:{sb_port}"
            wait_for(lambda: _up(url), 10, "sandbox")
            cards = httpx.post(f"{url}/_sandbox/cards", json={"count": jobs}).json()["cardnumbers"]
            settings = _settings(redis_url, url)
            env = {k: v for k, v in os.environ.items() if not k.startswith("CARDLOAD_")}
            command = ["worker", "--without-mingle", "--without-gossip", *worker_args]
            with (tmp / "worker.log").open("w") as log:
                worker = _start(
                    [sys.executable, "-m", "cli.main", *command],
                    cwd=ROOT,
                    env=env | to_env(settings),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            return _measure(settings, jobs, cards)
        finally:
            for proc in (worker, sandbox):
                if proc is not None:
                    _stop(proc)


def _measure(settings: Settings, jobs: int, cards: list[str]) -> float:
    app = create_app(settings)
    wait_for(lambda: app.control.ping(timeout=0.5), 60, "worker")
    client = redis.Redis.from_url(settings.redis_url)
    producer = CardLoadProducer(app, JobStore(client), settings)
    batch = [
        CardLoadJob(idempotency_key=f"bench-{i}", card_number=card, amount_cents=500)
        for i, card in enumerate(cards)
    ]
    start = time.monotonic()
    producer.enqueue_many(batch)
    # The success event is the last step; its count is one cheap XLEN to poll.
    wait_for(lambda: client.xlen(settings.events.stream) >= jobs, 600, "jobs")
    elapsed = time.monotonic() - start
    if not _all_done(producer.store, batch):
        raise SystemExit("not every job succeeded")
    return jobs / elapsed


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_sandbox/health").status_code == 200
    except httpx.TransportError:
        return False


def _all_done(store: JobStore, batch: list[CardLoadJob]) -> bool:
    return all(
        r is not None and r.status.value == "succeeded"
        for r in store.load_many([j.job_id for j in batch])
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="Celery pool comparison for card loads.")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument(
        "--latency-ms", type=int, default=50, help="added by the sandbox to every API call"
    )
    parser.add_argument("--only", nargs="*", help="configuration names to run")
    a = parser.parse_args()

    results: dict[str, float] = {}
    for name, args in CONFIGS.items():
        if a.only and name not in a.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = run_one(args, a.jobs, a.latency_ms, Path(tmp))
        print(f"{name:28} {results[name]:8.1f} jobs/s", flush=True)
    base = next(iter(results.values()))
    print(f"\n{a.jobs} jobs, {a.latency_ms} ms added per API call; ratio against the first row")
    for name, rate in results.items():
        print(f"{name:28} {rate:8.1f} jobs/s  x{rate / base:5.2f}")
    print(json.dumps({k: round(v, 1) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
