"""Forgetting finished jobs by hand (``cardload jobs purge``).

Succeeded jobs expire by themselves (``CARDLOAD_RETENTION_JOBS_S``, set by the script
that records the success); this finds what does not: jobs that succeeded before
retention existed, and dead-lettered jobs an operator lets go of. It walks the job
records with SCAN (never KEYS: it would block Redis for the whole keyspace), reads
their status and age in pipelined batches, and deletes each through the store's
script, which checks again that the job is finished and unchanged: a job replayed
while the purge runs is left alone. Queued and running jobs are never touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from cardload.jobs import keys
from cardload.jobs.model import JobStatus
from cardload.jobs.replies import text
from cardload.jobs.store import PIPELINE_CHUNK, JobStore

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_DURATION = re.compile(r"(\d+)([smhdw])")


def parse_duration(value: str) -> int:
    """Seconds in ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or ``1d12h``.

    :raises ValueError: with a message that says what is accepted.
    """
    spec = value.strip().lower()
    parts = _DURATION.findall(spec)
    if not spec or "".join(n + u for n, u in parts) != spec:
        raise ValueError(
            f"{value!r} is not a duration: write a whole number and a unit, "
            "s, m, h, d or w (30d, 12h, 1d12h)"
        )
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{value!r} is no time at all: give a duration above 0 (30d, 12h)")
    return seconds


@dataclass
class PurgeCounts:
    """What a purge deleted (or, dry, would delete) and what it left alone."""

    dry_run: bool
    older_than_s: int
    seen: int = 0  # job records looked at
    succeeded: int = 0  # succeeded jobs deleted (record and history)
    dead_lettered: int = 0  # dead-lettered jobs deleted (--include-dead-letters)
    dead_letter_entries: int = 0  # their entries in the dead-letter store
    keys_deleted: int = 0  # idempotency keys past CARDLOAD_RETENTION_KEYS_S
    kept_unfinished: int = 0  # queued or running: never purged
    kept_dead_lettered: int = 0  # old enough, dead-lettered, without the flag
    kept_recent: int = 0  # finished more recently than --older-than

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Finished:
    """A job record as the purge read it."""

    job_id: str
    status: JobStatus
    updated_at: str  # as stored ('' if none): the script deletes only what is unchanged
    at: float | None  # when it last changed (unix s), None if unreadable
    has_letter: bool  # its dead-letter entry exists (read for dry runs only)


def purge_finished(
    store: JobStore,
    older_than_s: int,
    *,
    include_dead_letters: bool = False,
    dry_run: bool = False,
    batch: int = PIPELINE_CHUNK,
) -> PurgeCounts:
    """Delete jobs that finished more than ``older_than_s`` ago (by their last update):
    succeeded ones, and dead-lettered ones (with their dead-letter entries) only with
    ``include_dead_letters``. Their idempotency keys are kept until
    ``CARDLOAD_RETENTION_KEYS_S`` after the job finished (deleted if that has passed,
    else given what is left of it), so a resubmission is still no second load."""
    counts = PurgeCounts(dry_run=dry_run, older_than_s=older_than_s)
    now = store.server_time()  # Redis's clock, the one the scripts keep time by
    keys_s = store.keys_retention_ms / 1000
    may_go = [JobStatus.SUCCEEDED] + ([JobStatus.DEAD_LETTERED] if include_dead_letters else [])
    for job_ids in _job_id_batches(store, batch):
        for found in _read(store, job_ids, letters=dry_run and include_dead_letters):
            counts.seen += 1
            if not found.status.terminal:
                counts.kept_unfinished += 1
            elif found.at is None or found.at > now - older_than_s:  # unreadable: kept
                counts.kept_recent += 1
            elif found.status not in may_go:
                counts.kept_dead_lettered += 1
            else:
                _forget(store, found, int((keys_s - (now - found.at)) * 1000), may_go, counts)
    return counts


def _forget(
    store: JobStore,
    found: _Finished,
    keys_left_ms: int,
    may_go: list[JobStatus],
    counts: PurgeCounts,
) -> None:
    if counts.dry_run:
        deleted, keys_gone, entries = True, int(keys_left_ms <= 0), int(found.has_letter)
    else:
        deleted, keys_gone, entries = store.forget(
            found.job_id, updated_at=found.updated_at, statuses=may_go, keys_left_ms=keys_left_ms
        )
    if not deleted:  # replayed or changed since it was read
        return
    if found.status is JobStatus.SUCCEEDED:
        counts.succeeded += 1
    else:
        counts.dead_lettered += 1
    counts.keys_deleted += keys_gone
    counts.dead_letter_entries += entries


def _read(store: JobStore, job_ids: list[str], *, letters: bool) -> Iterator[_Finished]:
    """The records of these jobs that still exist (one pipelined round trip)."""
    pipe = store.redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(keys.job(job_id), "status", "updated_at", "enqueued_at")
    for job_id in job_ids if letters else ():
        pipe.exists(keys.dead_letter(store.dead_letters, job_id))
    replies = pipe.execute()
    has_letter = replies[len(job_ids) :] or [0] * len(job_ids)
    for job_id, (status, updated, enqueued), letter in zip(
        job_ids, replies[: len(job_ids)], has_letter, strict=True
    ):
        if status is None:  # expired or deleted since the scan saw it
            continue
        stamp = text(updated) if updated else ""
        at = _timestamp(stamp or (text(enqueued) if enqueued else ""))
        yield _Finished(job_id, JobStatus(text(status)), stamp, at, bool(letter))


def _job_id_batches(store: JobStore, size: int) -> Iterator[list[str]]:
    """The ids of every job record, ``size`` at a time (SCAN may repeat one: the
    script's checks make a second look harmless)."""
    found: list[str] = []
    for key in store.redis.scan_iter(match=keys.JOBS_MATCH, count=1000, _type="hash"):
        job_id = keys.job_id_of(text(key))
        if job_id is None:
            continue
        found.append(job_id)
        if len(found) >= size:
            yield found
            found = []
    if found:
        yield found


def _timestamp(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None
