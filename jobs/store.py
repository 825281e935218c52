"""The job state record in Redis: admission by idempotency key, step transitions with
attempt counting and history, and the per-job execution lock.

Every change is one Lua script, so a status, its attempt counter and its history
entry never disagree, whatever crashes in between. (Scripts name all their keys,
but several keys per job: run one Redis, not a cluster.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from jobs import keys
from jobs.model import (
    CardLoadJob,
    ErrorInfo,
    HistoryEntry,
    JobRecord,
    JobStatus,
    LoadResult,
    now_utc,
)
from jobs.replies import text

PIPELINE_CHUNK = 500
TERMINAL = ",".join(s.value for s in JobStatus if s.terminal)
ANY_OPEN = "*"  # "allowed" wildcard: any status that is not terminal

# KEYS: idem, job, history, active.  ARGV: job_id, job_json, fingerprint, now_iso, now_ts, entry
_ADMIT = """
local existing = redis.call('GET', KEYS[1])
if existing then return {existing, 0} end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[3])
redis.call('HSET', KEYS[2], 'job', ARGV[2], 'fingerprint', ARGV[3], 'status', 'queued',
  'generation', 0, 'enqueued_at', ARGV[4], 'updated_at', ARGV[4], 'dispatched', 0)
redis.call('RPUSH', KEYS[3], ARGV[6])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
return {ARGV[1] .. ' ' .. ARGV[3], 1}
"""

# KEYS: job, history, active.
# ARGV: job_id, allowed (comma list or '*'), new status, history entry (JSON), now_ts,
#       attempt counter field or '', terminal statuses, then field/value pairs to set.
_TRANSITION = """
local function member(list, s)
  return string.find(',' .. list .. ',', ',' .. s .. ',', 1, true) ~= nil
end
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {'missing', -1} end
if ARGV[2] == '*' then
  if member(ARGV[7], current) then return {current, -1} end
elseif not member(ARGV[2], current) then
  return {current, -1}
end
local n = 0
local entry = cjson.decode(ARGV[4])
if ARGV[6] ~= '' then
  n = redis.call('HINCRBY', KEYS[1], ARGV[6], 1)
  entry['attempt'] = n
end
redis.call('HSET', KEYS[1], 'status', ARGV[3], unpack(ARGV, 8))
redis.call('RPUSH', KEYS[2], cjson.encode(entry))
if member(ARGV[7], ARGV[3]) then
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
end
return {current, n}
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class IdempotencyConflict(Exception):
    """The idempotency key was used before for a job asking for something else."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(f"idempotency key {key!r} already used by job {job_id} with other content")
        self.key = key
        self.job_id = job_id


@dataclass(frozen=True)
class Admission:
    job_id: str
    created: bool  # False: the key was known and this is the first job's id


@dataclass(frozen=True)
class Transition:
    previous: str  # the status before, or "missing"
    applied: bool
    attempt: int = 0


def _record(raw: dict[bytes, bytes], history: list[bytes]) -> JobRecord | None:
    if not raw:
        return None
    f = {text(k): text(v) for k, v in raw.items()}
    return JobRecord(
        job=CardLoadJob.model_validate_json(f["job"]),
        status=JobStatus(f["status"]),
        transaction_id=f.get("transaction_id") or None,
        attempts={
            k.removeprefix("attempts_"): int(v) for k, v in f.items() if k.startswith("attempts_")
        },
        generation=int(f.get("generation", 0)),
        reconcile=f.get("reconcile") == "1",
        dispatched=f.get("dispatched") == "1",
        enqueued_at=datetime.fromisoformat(f["enqueued_at"]),
        updated_at=datetime.fromisoformat(f["updated_at"]),
        result=LoadResult.model_validate_json(f["result"]) if f.get("result") else None,
        error=ErrorInfo.model_validate_json(f["error"]) if f.get("error") else None,
        history=[HistoryEntry.model_validate_json(h) for h in history],
        events=[v for k, v in f.items() if k.startswith("event:")],
    )


class JobStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._admit = client.register_script(_ADMIT)
        self._transition = client.register_script(_TRANSITION)
        self._release = client.register_script(_RELEASE)

    # --- admission ------------------------------------------------------------------

    def admit(self, job: CardLoadJob) -> Admission:
        result = self.admit_many([job])[0]
        if isinstance(result, IdempotencyConflict):
            raise result
        return result

    def admit_many(self, jobs: Sequence[CardLoadJob]) -> list[Admission | IdempotencyConflict]:
        """One result per job, in order; pipelined, one round trip per chunk of jobs."""
        out: list[Admission | IdempotencyConflict] = []
        for start in range(0, len(jobs), PIPELINE_CHUNK):
            chunk = jobs[start : start + PIPELINE_CHUNK]
            pipe = self.redis.pipeline(transaction=False)
            for job in chunk:
                self._admit_call(job, pipe)
            for job, (value, created) in zip(chunk, pipe.execute(), strict=True):
                job_id, _, fingerprint = text(value).partition(" ")
                if not created and fingerprint != job.fingerprint():
                    out.append(IdempotencyConflict(job.idempotency_key, job_id))
                else:
                    out.append(Admission(job_id, bool(created)))
        return out

    def _admit_call(self, job: CardLoadJob, pipe: Any) -> None:
        now = now_utc()
        entry = HistoryEntry(at=now, status=JobStatus.QUEUED, note="accepted")
        job_keys = [keys.idempotency(job.idempotency_key), keys.job(job.job_id)]
        self._admit(
            keys=[*job_keys, keys.history(job.job_id), keys.ACTIVE],
            args=[
                job.job_id,
                job.model_dump_json(),
                job.fingerprint(),
                now.isoformat(),
                now.timestamp(),
                entry.model_dump_json(exclude_none=True),
            ],
            client=pipe,
        )

    def mark_dispatched(self, job_ids: Iterable[str]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hset(keys.job(job_id), "dispatched", 1)
        pipe.execute()

    def dispatched_many(self, job_ids: Sequence[str]) -> dict[str, bool]:
        """Whether each job's first message was sent (pipelined)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(keys.job(job_id), "dispatched")
        return {jid: v in (b"1", "1") for jid, v in zip(job_ids, pipe.execute(), strict=True)}

    def job_id_for_key(self, key: str) -> str | None:
        value = self.redis.get(keys.idempotency(key))
        return text(value).partition(" ")[0] if value else None

    # --- reading --------------------------------------------------------------------

    def load(self, job_id: str, *, history: bool = True) -> JobRecord | None:
        return self.load_many([job_id], history=history)[0]

    def load_many(self, job_ids: Sequence[str], *, history: bool = True) -> list[JobRecord | None]:
        """Records in order (None for unknown ids), pipelined in chunks. Without
        ``history`` the record's history is left empty: one read per job, not two."""
        out: list[JobRecord | None] = []
        for start in range(0, len(job_ids), PIPELINE_CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for job_id in job_ids[start : start + PIPELINE_CHUNK]:
                pipe.hgetall(keys.job(job_id))
                if history:
                    pipe.lrange(keys.history(job_id), 0, -1)
            replies = pipe.execute()
            pairs = (
                zip(replies[::2], replies[1::2], strict=True)
                if history
                else ((r, []) for r in replies)
            )
            out += [_record(raw, entries) for raw, entries in pairs]
        return out

    def stalled(self, older_than_ts: float, limit: int = 1000) -> list[str]:
        """Unfinished jobs without progress since ``older_than_ts`` (unix seconds)."""
        ids: Any = self.redis.zrangebyscore(keys.ACTIVE, "-inf", older_than_ts, start=0, num=limit)
        return [text(i) for i in ids]

    # --- transitions ------------------------------------------------------------------

    def transition(
        self,
        job_id: str,
        *,
        allowed: Iterable[JobStatus] | None,
        to: JobStatus,
        entry: HistoryEntry | None = None,
        count_attempt_of: str | None = None,
        fields: dict[str, str] | None = None,
    ) -> Transition:
        """Move the job to ``to`` if its status is in ``allowed`` (None: any status that
        is not terminal), counting an attempt of the named step, recording history."""
        now = now_utc()
        entry = entry or HistoryEntry(status=to)
        sets = {"updated_at": now.isoformat(), **(fields or {})}
        previous, attempt = self._transition(
            keys=[keys.job(job_id), keys.history(job_id), keys.ACTIVE],
            args=[
                job_id,
                ANY_OPEN if allowed is None else ",".join(s.value for s in allowed),
                to.value,
                entry.model_copy(update={"at": now, "status": to}).model_dump_json(
                    exclude_none=True
                ),
                now.timestamp(),
                f"attempts_{count_attempt_of}" if count_attempt_of else "",
                TERMINAL,
                *[x for pair in sets.items() for x in pair],
            ],
        )
        return Transition(text(previous), int(attempt) >= 0, max(int(attempt), 0))

    def record(self, job_id: str, entry: HistoryEntry) -> None:
        """Add a history entry (a retry, a note) without changing the status."""
        now = now_utc()
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(
            keys.history(job_id),
            entry.model_copy(update={"at": now}).model_dump_json(exclude_none=True),
        )
        pipe.hset(keys.job(job_id), "updated_at", now.isoformat())
        pipe.zadd(keys.ACTIVE, {job_id: now.timestamp()}, xx=True)
        pipe.execute()

    # --- the per-job lock ---------------------------------------------------------------

    def acquire(self, job_id: str, ttl_ms: int) -> str | None:
        """One execution of a job at a time: a token if we hold the lock, else None."""
        token = uuid.uuid4().hex
        if self.redis.set(keys.job_lock(job_id), token, nx=True, px=ttl_ms):
            return token
        return None

    def lock_ttl_ms(self, job_id: str) -> int:
        return max(int(self.redis.pttl(keys.job_lock(job_id))), 0)

    def release(self, job_id: str, token: str) -> None:
        self._release(keys=[keys.job_lock(job_id)], args=[token])
