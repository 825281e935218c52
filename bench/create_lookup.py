"""What it costs that no second transaction is ever started, whatever Redis lost.

Two ways to know whether a first create may repeat one the record no longer shows:

* ``after_doubt`` (the default): each claim asks the Redis server for its ``run_id``
  (INFO, inside the claim script) and looks the transaction up only when the server
  is not the one that last wrote the record, or after a retry, a replay or a takeover;
* ``always``: a ``merchantRef`` lookup (one more API call) before every create.

Part 1 runs the same batch through one worker in both modes (alternating, so drift
hits both), and reports jobs/s, worker CPU per job and API calls per job against
``after_doubt``. Part 2 measures, on the Redis server itself (``INFO commandstats``),
what the INFO call adds to a claim: the claim script against the same script with
the server's id given as a constant.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis
from stack import Measured, run_batch

from cardload.cli.localstack import redis_server
from cardload.jobs import CardLoadJob, JobStore, scripts

MODES = ("after_doubt", "always")
WORKER = ["--pool=threads", "--concurrency=32"]


def batch_runs(jobs: int, latency_ms: int, rounds: int) -> dict[str, list[Measured]]:
    results: dict[str, list[Measured]] = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode in MODES:
            with tempfile.TemporaryDirectory() as tmp:
                measured = run_batch(
                    WORKER,
                    jobs,
                    latency_ms,
                    Path(tmp) / "worker.log",
                    {"jobs": {"create_lookup": mode}},
                )
            results[mode].append(measured)
            print(
                f"{mode:12} {measured.jobs_per_s:7.1f} jobs/s  "
                f"{measured.cpu_ms_per_job:5.1f} ms CPU/job  "
                f"{measured.calls_per_job('list'):.2f} lookups/job",
                flush=True,
            )
    return results


def claim_cost_us(claims: int) -> dict[str, float]:
    """Server-side microseconds per claim: with the INFO call, and without it."""
    constant = scripts.CLAIM.replace(
        "local current = incarnation()", "local current = redis.call('HGET', job, 'epoch')"
    )
    assert constant != scripts.CLAIM
    out: dict[str, float] = {}
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        for name, source in (("claim with INFO", scripts.CLAIM), ("claim, id given", constant)):
            store = JobStore(client)
            store._claim = client.register_script(source)  # the variant under test
            jobs = [
                CardLoadJob(idempotency_key=f"{name}-{i}", card_number="9" * 16, amount_cents=1)
                for i in range(claims)
            ]
            store.admit_many(jobs)
            client.config_resetstat()
            for job in jobs:
                store.claim(job.job_id, "create", lease_ms=60_000, max_attempts=8)
            stats: Any = client.info("commandstats")
            out[name] = float(stats["cmdstat_evalsha"]["usec_per_call"])
        client.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="The cost of looking up before creating.")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--claims", type=int, default=20_000)
    a = parser.parse_args()

    results = batch_runs(a.jobs, a.latency_ms, a.rounds)
    summary: dict[str, dict[str, float]] = {}
    print(
        f"\n{a.jobs} jobs x {a.rounds} rounds, {a.latency_ms} ms per API call, "
        "medians, ratio against after_doubt"
    )
    for mode, runs in results.items():
        rate = statistics.median(m.jobs_per_s for m in runs)
        cpu = statistics.median(m.cpu_ms_per_job for m in runs)
        calls = statistics.median(sum(m.api_requests.values()) / m.jobs for m in runs)
        summary[mode] = {"jobs_per_s": rate, "cpu_ms_per_job": cpu, "api_calls_per_job": calls}
    base = summary["after_doubt"]
    for mode, row in summary.items():
        print(
            f"{mode:12} {row['jobs_per_s']:7.1f} jobs/s "
            f"x{row['jobs_per_s'] / base['jobs_per_s']:.2f}  "
            f"{row['cpu_ms_per_job']:5.1f} ms CPU/job "
            f"x{row['cpu_ms_per_job'] / base['cpu_ms_per_job']:.2f}  "
            f"{row['api_calls_per_job']:.2f} API calls/job"
        )
    costs = claim_cost_us(a.claims)
    print(f"\nRedis server time per claim ({a.claims} claims each):")
    for name, us in costs.items():
        print(f"{name:18} {us:6.2f} us  x{us / costs['claim, id given']:.2f}")
    print(json.dumps({"batch": summary, "claim_us": costs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
