"""Replaying dead letters: back to ``queued`` with the same job id, idempotency key and
transaction, then sent again. The job reads the Smart Transaction before it repeats
anything, so a replay never loads a card twice (its earlier start may have loaded it).
Only a transaction whose payment failed or was cancelled is let go: no load of it
stands, it cannot be paid again, and the replay pays with a new one."""

from __future__ import annotations

from collections.abc import Iterable

from cardload.producers.enqueue import CardLoadProducer
from cardload.worker.dispatch import Dispatch, send_steps


def replay_dead_letters(producer: CardLoadProducer, job_ids: Iterable[str]) -> list[str]:
    """Queue dead-lettered jobs again.

    :param producer: its store holds the jobs, its app sends them.
    :param job_ids: the jobs to replay; ids that are not dead letters are skipped.
    :returns: the jobs that were dead letters and are queued again now.
    """
    replayed = [job_id for job_id in job_ids if producer.store.reopen(job_id)]
    if replayed:
        items = [Dispatch("create", job_id, "replay") for job_id in replayed]
        send_steps(producer.app, items, producer.settings.jobs.queue)
    return replayed


def replay_dead_letter(producer: CardLoadProducer, job_id: str) -> bool:
    """Queue one dead-lettered job again; False if it is not a dead letter.

    :param producer: its store holds the job, its app sends it.
    :param job_id: the job to replay.
    """
    return bool(replay_dead_letters(producer, [job_id]))
