"""``cardload worker [celery worker options]``: ``celery -A cardload.worker worker`` with
our defaults.

The default pool is threads (``CARDLOAD_WORKER_POOL``, ``CARDLOAD_WORKER_CONCURRENCY``):
a step spends its time waiting on HTTP, and one process with many threads keeps many
calls in flight on one connection pool (the README has the measurement).
"""

from __future__ import annotations

from typing import Any

from cardload.config import load_settings
from cardload.worker import default_app


def register(commands: Any) -> None:
    # Only for the help listing: main() hands "worker ..." to run_worker untouched.
    commands.add_parser("worker", help="run a Celery worker (other options go to celery worker)")


def worker_argv(extra: list[str]) -> list[str]:
    settings = load_settings()
    settings.require_secuconnect()
    defaults = [
        "worker",
        f"--pool={settings.worker.pool}",
        f"--concurrency={settings.worker.concurrency}",
        f"--queues={settings.jobs.queue}",
        f"--loglevel={settings.log.level}",
        "--task-events",
    ]
    return defaults + extra  # later options win, so the caller's override ours


def run_worker(extra: list[str]) -> int:
    default_app().worker_main(worker_argv(extra))
    return 0
