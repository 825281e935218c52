"""Re-dispatch jobs that stopped making progress.

A message can be lost outside our control (a producer that died between accepting a
job and sending it, a broker restart without persistence). Every unfinished job sits
in a sorted set scored by its last progress; one worker at a time (a Redis lock)
sends the current step again for those silent longer than ``stall_after_s``. Steps are
idempotent, so a message that was merely slow, not lost, costs a duplicate no-op.
"""

from __future__ import annotations

import threading

import redis
from celery import Celery

from cardload.config import Settings
from cardload.jobs import keys
from cardload.jobs.connection import connect
from cardload.jobs.model import HistoryEntry, JobStatus
from cardload.jobs.routing import STEP_FOR_STATUS
from cardload.jobs.store import JobStore, job_store
from cardload.observability import get_logger
from cardload.worker.dispatch import Dispatch, send_steps

log = get_logger(__name__)


def recover_stalled(
    app: Celery, store: JobStore, stall_after_s: float, now: float | None = None
) -> int:
    """Send the current step of every stalled job again; returns how many. Progress is
    measured on Redis's clock, so the hosts' clocks need not agree."""
    cutoff = (now if now is not None else store.server_time()) - stall_after_s
    items: list[tuple[Dispatch, JobStatus]] = []
    for job_id in store.stalled(cutoff):
        try:
            record = store.load(job_id, history=False)
        except (ValueError, KeyError) as exc:
            record = None
            log.error("sweeper.unreadable_job", job_id=job_id, error=repr(exc))
        if record is None:
            # Not to be sent again, and not to stand in front of the jobs behind it.
            store.set_aside(job_id)
            continue
        if record.status in STEP_FOR_STATUS:
            step = STEP_FOR_STATUS[record.status]
            items.append((Dispatch(step, job_id, "recovered"), record.status))
    if items:
        send_steps(app, [item for item, _ in items], app.conf.task_default_queue)
        for item, status in items:
            # Recording progress also moves the job's score: it is not re-sent next round.
            store.record(
                item.job_id, HistoryEntry(status=status, note=f"stalled: {item.step} sent again")
            )
        log.warning("jobs.recovered", count=len(items))
    return len(items)


def _loop(app: Celery, settings: Settings, stop: threading.Event) -> None:
    client = connect(settings.redis_url)
    store = job_store(client, settings)
    interval_s = min(60.0, settings.jobs.stall_after_s / 4)
    while not stop.wait(interval_s):
        try:
            if client.set(keys.SWEEP_LOCK, "1", nx=True, px=int(interval_s * 900)):
                recover_stalled(app, store, settings.jobs.stall_after_s)
        except redis.RedisError as exc:
            log.warning("sweeper.redis_error", error=str(exc))
        except Exception:  # the backstop against lost jobs must outlive any one failure
            log.exception("sweeper.failed")


def start_sweeper(app: Celery, settings: Settings) -> threading.Event:
    stop = threading.Event()
    thread = threading.Thread(
        target=_loop, args=(app, settings, stop), name="cardload-sweeper", daemon=True
    )
    thread.start()
    return stop
