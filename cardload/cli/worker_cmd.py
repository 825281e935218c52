"""``cardload worker [celery worker options]``: ``celery -A cardload.worker worker`` with
our defaults.

The default pool is threads (``CARDLOAD_WORKER_POOL``, ``CARDLOAD_WORKER_CONCURRENCY``):
a step spends its time waiting on HTTP, and one process with many threads keeps many
calls in flight on one connection pool (the README has the measurement).
"""

from __future__ import annotations

import os
from typing import Any

from cardload.config import load_settings
from cardload.config.settings import ENV_PREFIX
from cardload.worker import default_app


def register(commands: Any) -> None:
    # Only for the help listing: main() hands "worker ..." to run_worker untouched.
    commands.add_parser(
        "worker",
        help="run a Celery worker (--metrics-port P serves Prometheus metrics; other options "
        "go to celery worker)",
    )


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
    extra = _take_metrics_port(extra)
    default_app().worker_main(worker_argv(extra))
    return 0


def _take_metrics_port(extra: list[str]) -> list[str]:
    """``--metrics-port P`` is ours, not Celery's: it becomes the setting
    ``CARDLOAD_WORKER_METRICS_PORT`` of this process, which the app reads."""
    rest: list[str] = []
    args = iter(extra)
    for arg in args:
        if arg == "--metrics-port":
            port = next(args, "")
        elif arg.startswith("--metrics-port="):
            port = arg.partition("=")[2]
        else:
            rest.append(arg)
            continue
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            message = f"--metrics-port wants a port (1-65535), not {port!r}"
            raise SystemExit(f"cardload worker: {message}")
        os.environ[f"{ENV_PREFIX}WORKER_METRICS_PORT"] = port
    return rest
