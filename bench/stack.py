"""What the worker benchmarks share: a private redis-server, a sandbox process adding
latency to every API call, one ``cardload worker`` process, a batch of card loads
timed from enqueue to the last result event, and the worker's CPU seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from cardload.cli.localstack import free_port, redis_server, wait_for
from cardload.config import Settings, to_env
from cardload.jobs import CardLoadJob, job_store
from cardload.producers.enqueue import CardLoadProducer
from cardload.sandbox.settings import sandbox_settings
from cardload.worker import create_app
from cardload.worker.dispatch import redis_queue_lists

ROOT = Path(__file__).parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Measured:
    jobs: int
    seconds: float
    worker_cpu_s: float
    api_requests: dict[str, int]
    worker_peak_rss_mb: float = 0.0

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    @property
    def cpu_ms_per_job(self) -> float:
        return self.worker_cpu_s * 1000 / self.jobs

    def calls_per_job(self, endpoint: str) -> float:
        return self.api_requests.get(endpoint, 0) / self.jobs


def queue_length(client: redis.Redis, queue: str) -> int:
    """Messages waiting in ``queue``, in all of kombu's priority lists."""
    return sum(int(client.llen(name)) for name in redis_queue_lists(queue))


def start(command: list[str], **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(command, text=True, start_new_session=True, **kw)


def stop(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _stat(pid: int | str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def session_pids(session: int) -> list[int]:
    """The processes of a session (the worker and any pool children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(entry.name)
            if fields is not None and int(fields[3]) == session:  # stat field 6: session
                pids.append(int(entry.name))
    return pids


def session_cpu_s(session: int) -> float:
    """User + system CPU seconds of every process in a session, read from /proc."""
    total = 0
    for pid in session_pids(session):
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def session_peak_rss_mb(session: int) -> float:
    """The sum of the peak resident sizes (VmHWM) of a session's processes."""
    total_kb = 0
    for pid in session_pids(session):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_sandbox/health").status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def sandbox_process(latency_ms: int) -> Iterator[str]:
    port = free_port()
    serve = ["sandbox", "serve", "--port", str(port), "--latency-ms", str(latency_ms)]
    proc = start(
        [sys.executable, "-m", "cardload.cli.main", *serve], cwd=ROOT, stdout=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(url), 10, "sandbox")
        yield url
    finally:
        stop(proc)


def bench_settings(redis_url: str, sandbox_url: str, **sections: dict[str, Any]) -> Settings:
    return sandbox_settings(
        redis_url, sandbox_url, log={"format": "json", "level": "WARNING"}, **sections
    )


def run_batch(
    worker_args: list[str],
    jobs: int,
    latency_ms: int,
    log_path: Path,
    sections: dict[str, dict[str, Any]] | None = None,
) -> Measured:
    """One private stack, one worker ready before the clock starts, ``jobs`` loads;
    ``sections`` override settings (``{"jobs": {"create_lookup": "always"}}``)."""
    with redis_server() as redis_url, sandbox_process(latency_ms) as url:
        cards = httpx.post(f"{url}/_sandbox/cards", json={"count": jobs}).json()["cardnumbers"]
        settings = bench_settings(redis_url, url, **(sections or {}))
        with cardload_worker(settings, worker_args, log_path) as pid:
            return _measure(settings, cards, pid, url)


@contextmanager
def cardload_worker(settings: Settings, worker_args: list[str], log_path: Path) -> Iterator[int]:
    """``cardload worker`` with these settings alone (no ``CARDLOAD_*`` of the caller's),
    its output in ``log_path``; yields its pid and stops it afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDLOAD_")}
    command = ["worker", "--without-mingle", "--without-gossip", *worker_args]
    with log_path.open("w") as log:
        worker = start(
            [sys.executable, "-m", "cardload.cli.main", *command],
            cwd=ROOT,
            env=env | to_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield worker.pid
        finally:
            stop(worker)


def _measure(settings: Settings, cards: list[str], worker_pid: int, url: str) -> Measured:
    app = create_app(settings)
    wait_for(lambda: app.control.ping(timeout=0.5), 60, "worker")
    client = redis.Redis.from_url(settings.redis_url)
    producer = CardLoadProducer(app, job_store(client, settings), settings)
    batch = [
        CardLoadJob(idempotency_key=f"bench-{i}", card_number=card, amount_cents=500)
        for i, card in enumerate(cards)
    ]
    before = httpx.get(f"{url}/_sandbox/stats").json()["requests"]
    cpu_before = session_cpu_s(worker_pid)
    begin = time.monotonic()
    producer.enqueue_many(batch)
    # The success event is written with the success: its count is one cheap XLEN.
    wait_for(lambda: client.xlen(settings.events.stream) >= len(batch), 600, "jobs")
    elapsed = time.monotonic() - begin
    cpu = session_cpu_s(worker_pid) - cpu_before
    rss = session_peak_rss_mb(worker_pid)
    after = httpx.get(f"{url}/_sandbox/stats").json()["requests"]
    records = producer.store.load_many([j.job_id for j in batch], history=False)
    if not all(r is not None and r.status.value == "succeeded" for r in records):
        raise SystemExit("not every job succeeded")
    requests = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return Measured(len(batch), elapsed, cpu, requests, rss)
