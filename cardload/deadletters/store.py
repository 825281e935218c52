"""The dead-letter store in Redis: what a person reads to judge a job that could not
succeed, and what replay takes it out of.

A dead letter is written by the job store together with the job's status and its
``card_load.failed`` event, all or nothing (:meth:`jobs.store.JobStore.dead_letter`);
replay is :meth:`jobs.store.JobStore.reopen`. This module reads the entries and
forgets them on request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field

from cardload.jobs import keys
from cardload.jobs.model import CardLoadJob, ErrorInfo, HistoryEntry
from cardload.jobs.replies import text


class DeadLetter(BaseModel):
    """A job that could not succeed, with everything needed to judge and replay it."""

    model_config = ConfigDict(frozen=True)

    job: CardLoadJob
    error: ErrorInfo
    transaction_id: str | None
    attempts: dict[str, int]
    generation: int
    history: list[HistoryEntry]
    dead_lettered_at: datetime
    load_uncertain: bool = Field(
        False,
        description="a start was sent and never read back: the card may have been loaded",
    )


class DeadLetterStore:
    def __init__(self, client: redis.Redis, name: str) -> None:
        self.redis = client
        self.name = name

    def get(self, job_id: str) -> DeadLetter | None:
        raw = self.redis.get(keys.dead_letter(self.name, job_id))
        return DeadLetter.model_validate_json(raw) if raw else None

    def entries(self, offset: int = 0, count: int = 100) -> list[DeadLetter]:
        ids: Any = self.redis.zrange(self.name, offset, offset + count - 1)
        if not ids:
            return []
        raws: Any = self.redis.mget([keys.dead_letter(self.name, text(i)) for i in ids])
        return [DeadLetter.model_validate_json(raw) for raw in raws if raw]

    def ids(self) -> list[str]:
        ids: Any = self.redis.zrange(self.name, 0, -1)
        return [text(i) for i in ids]

    def count(self) -> int:
        return int(self.redis.zcard(self.name))

    def purge(self, job_id: str) -> bool:
        """Forget the entry; the job's own record stays, dead-lettered, for the audit."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys.dead_letter(self.name, job_id))
        pipe.zrem(self.name, job_id)
        deleted, _ = pipe.execute()
        return bool(deleted)
