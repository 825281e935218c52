"""The chaos audit (``bench/chaos.py``) at 1,000 jobs, once per broker: three workers, one
SIGKILLed every 5 s, the API's faults, the private Redis (and RabbitMQ) killed and
started again once; the audit must find every card loaded once, no job lost, one
result event per job, balances equal to their loads and ``cardload reconcile`` in
agreement. Minutes each: under the slow marker (``pytest -m slow``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_the_chaos_audit_finds_nothing_wrong(broker: str) -> None:
    if broker == "rabbitmq" and not (
        shutil.which("rabbitmq-server", path="/usr/lib/rabbitmq/bin")
        or shutil.which("rabbitmq-server")
    ):
        pytest.skip("rabbitmq-server is not installed")
    done = subprocess.run(
        [sys.executable, "bench/chaos.py", "--jobs", "1000", "--broker", broker],
        cwd=ROOT, capture_output=True, text=True, timeout=1700, check=False,
    )  # fmt: skip
    print(done.stdout[-4000:], done.stderr[-4000:])
    body = done.stdout[done.stdout.index("{") : done.stdout.rindex("}") + 1]
    report = json.loads(body)
    assert done.returncode == 0, "DISCREPANCY" in done.stdout
    assert (
        report["cards_loaded_once"]
        == 1000 - report["dead_lettered"] + report["dead_lettered_but_loaded"]
    )
    assert report["cards_loaded_twice_or_more"] == 0 and report["lost"] == 0
    assert report["events_per_job"] == {"1": 1000}
    assert report["redis_killed"] and report["worker_kills"] >= 3
    if broker == "rabbitmq":
        assert report["rabbitmq_killed"]
