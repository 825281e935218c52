"""The API's shared circuit breaker and rate limit with real worker processes, the
sandbox over HTTP and our own Redis."""

from __future__ import annotations

import time
from collections.abc import Mapping

from pydantic import SecretStr

from cardload.config import Settings
from cardload.flowcontrol import SharedBreaker
from cardload.jobs import CardLoadJob, JobStatus
from cardload.sandbox import SEED_CARD
from tests.services import wait_for
from tests.worker.conftest import Stack


def _with(settings: Settings, **sections: Mapping[str, object]) -> Settings:
    update = {
        name: getattr(settings, name).model_copy(update=dict(values))
        for name, values in sections.items()
    }
    return settings.model_copy(update=update)


def _jobs(prefix: str, count: int) -> list[CardLoadJob]:
    return [
        CardLoadJob(idempotency_key=f"{prefix}-{i}", card_number=SEED_CARD, amount_cents=100 + i)
        for i in range(count)
    ]


def test_a_wrong_secret_opens_the_breaker_and_the_right_one_loads_every_job_once(
    stack: Stack,
) -> None:
    """Workers with a wrong client secret: the token endpoint refuses it, the breaker
    opens for everyone, 50 queued jobs wait (no dead letter, no attempt spent); workers
    restarted with the right secret probe, close it, and load each card once."""
    breaker = {"open_s": 0.5, "max_open_s": 1.0}
    right = _with(stack.settings, breaker=breaker)
    wrong = _with(right, secuconnect={"client_secret": SecretStr("not-the-secret")})
    workers = [stack.start_worker(settings=wrong) for _ in range(2)]
    ids = [stack.producer.enqueue(job) for job in _jobs("breaker", 50)]
    shared = SharedBreaker(stack.redis, right.breaker)

    def opened() -> bool:
        view = shared.view()
        return view.state != "closed" and view.reason == "credentials_refused"

    wait_for(opened, 30, "the breaker to open on the refused secret")
    # Several open periods and probes later: nothing loaded, nothing given up.
    wait_for(lambda: stack.sandbox.requests["token"] >= 4, 30, "probes of the token endpoint")
    time.sleep(2.0)  # a negative check: nothing more is decided while it stays open
    assert stack.redis.zcard(stack.settings.events.dead_letters) == 0
    assert stack.ledger() == []
    records = [stack.store.load(job_id, history=False) for job_id in ids]
    assert all(r is not None and not r.status.terminal for r in records)
    # The jobs waited without spending their attempts.
    assert all(r is not None and max(r.attempts.values(), default=0) <= 1 for r in records)

    for worker in workers:
        worker.stop()
    for _ in range(2):
        stack.start_worker(settings=right)
    finished = [stack.finished(job_id, timeout_s=90) for job_id in ids]
    assert all(r.status is JobStatus.SUCCEEDED for r in finished)
    ledger = stack.ledger()
    assert sorted(e["amount_cents"] for e in ledger) == [100 + i for i in range(50)]
    assert shared.view().state == "closed"


def test_the_rate_limit_holds_across_worker_processes(stack: Stack) -> None:
    """Three workers, 20 requests per second between them: no second of the sandbox's
    log holds more (the token fetches included), and every job loads once."""
    limited = _with(stack.settings, rate_limit={"per_s": 20.0, "burst": 1, "max_wait_s": 2.0})
    for _ in range(3):
        stack.start_worker(settings=limited)
    began = time.monotonic()
    ids = [stack.producer.enqueue(job) for job in _jobs("rate", 40)]
    finished = [stack.finished(job_id, timeout_s=120) for job_id in ids]
    assert all(r.status is JobStatus.SUCCEEDED for r in finished)
    assert len(stack.ledger()) == 40
    times = sorted(t for t, _ in stack.sandbox.request_times if t >= began)
    assert len(times) >= 80  # at least a create and a start per job
    # The most requests any one-second window holds: the limit, and the one that may
    # fall exactly on its edge.
    busiest = max(sum(1 for u in times[i:] if u < t + 1.0) for i, t in enumerate(times))
    assert busiest <= 20 + 1
