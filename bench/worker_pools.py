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
import sys
import tempfile
from pathlib import Path

from stack import run_batch

CONFIGS = {
    "prefork -c 2 (baseline)": ["--pool=prefork", "--concurrency=2"],
    "prefork -c 8": ["--pool=prefork", "--concurrency=8"],
    "threads -c 8": ["--pool=threads", "--concurrency=8"],
    "threads -c 32": ["--pool=threads", "--concurrency=32"],
    "threads -c 64": ["--pool=threads", "--concurrency=64"],
}


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
            log = Path(tmp) / "worker.log"
            results[name] = run_batch(args, a.jobs, a.latency_ms, log).jobs_per_s
        print(f"{name:28} {results[name]:8.1f} jobs/s", flush=True)
    base = next(iter(results.values()))
    print(f"\n{a.jobs} jobs, {a.latency_ms} ms added per API call; ratio against the first row")
    for name, rate in results.items():
        print(f"{name:28} {rate:8.1f} jobs/s  x{rate / base:5.2f}")
    print(json.dumps({k: round(v, 1) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
