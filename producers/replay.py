"""Replaying dead letters: back to ``queued`` with the same job id, idempotency key and
transaction, then sent again. The job reads the Smart Transaction before it repeats
anything, so a replay never loads a card twice (its earlier start may have loaded it)."""

from __future__ import annotations

from collections.abc import Iterable

from producers.enqueue import CardLoadProducer
from worker.dispatch import Dispatch, send_steps


def replay_dead_letters(producer: CardLoadProducer, job_ids: Iterable[str]) -> list[str]:
    """The jobs that were dead letters and are queued again now (others are skipped)."""
    replayed = [job_id for job_id in job_ids if producer.store.reopen(job_id)]
    if replayed:
        send_steps(producer.app, [Dispatch("create", job_id, "replay") for job_id in replayed])
    return replayed
