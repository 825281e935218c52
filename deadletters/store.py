"""The dead-letter store in Redis.

Dead-lettering is one script: the job becomes ``dead_lettered``, its entry is
written and the ``card_load.failed`` event is appended, all or nothing. Replay
puts the job back to ``queued`` with the same id, idempotency key and transaction
id, and marks it for reconciliation, so the worker reads the Smart Transaction
before doing anything that could load the card a second time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict

from events.model import CardLoadFailed
from events.stream import EventStream
from jobs import keys
from jobs.model import CardLoadJob, ErrorInfo, HistoryEntry, JobStatus, now_utc
from jobs.replies import text

# KEYS: job, history, active, dlq index, dlq entry, stream
# ARGV: job_id, history entry, now_ts, error, dlq entry, flag, event id, event type,
#       event data, stream maxlen, now_iso
_DEAD_LETTER = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return 'missing' end
if current == 'succeeded' or current == 'dead_lettered' then return current end
redis.call('HSET', KEYS[1], 'status', 'dead_lettered', 'updated_at', ARGV[11], 'error', ARGV[4])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SET', KEYS[5], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
if redis.call('HSETNX', KEYS[1], ARGV[6], ARGV[7]) == 1 then
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[10], '*',
    'event_id', ARGV[7], 'type', ARGV[8], 'data', ARGV[9])
end
return current
"""

# KEYS: job, history, active, dlq index, dlq entry.  ARGV: job_id, entry, now_ts, now_iso
_REPLAY = """
local current = redis.call('HGET', KEYS[1], 'status')
if current ~= 'dead_lettered' then return current or 'missing' end
redis.call('HSET', KEYS[1], 'status', 'queued', 'updated_at', ARGV[4], 'reconcile', 1,
  'attempts_create', 0, 'attempts_start', 0, 'attempts_publish', 0, 'error', '')
redis.call('HINCRBY', KEYS[1], 'generation', 1)
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('DEL', KEYS[5])
redis.call('ZREM', KEYS[4], ARGV[1])
return current
"""


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


class DeadLetterStore:
    def __init__(self, client: redis.Redis, name: str, events: EventStream) -> None:
        self.redis = client
        self.name = name
        self.events = events
        self._dead_letter = client.register_script(_DEAD_LETTER)
        self._replay = client.register_script(_REPLAY)

    def _entry_key(self, job_id: str) -> str:
        return f"{self.name}:{job_id}"

    def _keys(self, job_id: str) -> list[str]:
        """The keys both scripts touch: job, history, active set, index, entry."""
        return [
            keys.job(job_id),
            keys.history(job_id),
            keys.ACTIVE,
            self.name,
            self._entry_key(job_id),
        ]

    def put(self, letter: DeadLetter, event: CardLoadFailed) -> bool:
        """Dead-letter the job; False if it had already finished (nothing changed)."""
        job_id = letter.job.job_id
        now = letter.dead_lettered_at
        entry = HistoryEntry(
            at=now,
            status=JobStatus.DEAD_LETTERED,
            note="dead-lettered",
            error=letter.error,
            transaction_id=letter.transaction_id,
        )
        _, (flag, event_id, event_type, data, maxlen) = self.events.publish_args(event)
        previous = self._dead_letter(
            keys=[*self._keys(job_id), self.events.name],
            args=[
                job_id,
                entry.model_dump_json(exclude_none=True),
                now.timestamp(),
                letter.error.model_dump_json(),
                letter.model_dump_json(),
                flag,
                event_id,
                event_type,
                data,
                maxlen,
                now.isoformat(),
            ],
        )
        return text(previous) not in ("succeeded", "dead_lettered", "missing")

    def get(self, job_id: str) -> DeadLetter | None:
        raw = self.redis.get(self._entry_key(job_id))
        return DeadLetter.model_validate_json(raw) if raw else None

    def entries(self, offset: int = 0, count: int = 100) -> list[DeadLetter]:
        ids: Any = self.redis.zrange(self.name, offset, offset + count - 1)
        if not ids:
            return []
        raws: Any = self.redis.mget([self._entry_key(text(i)) for i in ids])
        return [DeadLetter.model_validate_json(raw) for raw in raws if raw]

    def ids(self) -> list[str]:
        ids: Any = self.redis.zrange(self.name, 0, -1)
        return [text(i) for i in ids]

    def count(self) -> int:
        return int(self.redis.zcard(self.name))

    def reopen(self, job_id: str) -> bool:
        """Take the job out of the store and back to ``queued`` for a replay."""
        now = now_utc()
        entry = HistoryEntry(at=now, status=JobStatus.QUEUED, note="replayed from dead letters")
        previous = self._replay(
            keys=self._keys(job_id),
            args=[
                job_id,
                entry.model_dump_json(exclude_none=True),
                now.timestamp(),
                now.isoformat(),
            ],
        )
        return text(previous) == "dead_lettered"

    def purge(self, job_id: str) -> bool:
        """Forget the entry; the job's own record stays, dead-lettered, for the audit."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._entry_key(job_id))
        pipe.zrem(self.name, job_id)
        deleted, _ = pipe.execute()
        return bool(deleted)
