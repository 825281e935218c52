"""The job state record in Redis: admission by idempotency key, claiming a step under a
fenced lease, the fenced writes that end a step, dead-lettering and replay.

This module is the record's one owner: every write goes through a script of
:mod:`jobs.scripts`, called from here. Everyone else reads, or asks.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

import redis
from redis.commands.core import Script

from cardload.config import Settings
from cardload.errors import CardloadError
from cardload.jobs import keys, scripts
from cardload.jobs.model import (
    PAYMENT_FAILED,
    CardLoadJob,
    ErrorInfo,
    HistoryEntry,
    JobRecord,
    JobStatus,
    LoadResult,
    now_utc,
)
from cardload.jobs.replies import text
from cardload.jobs.routing import STEP_STATUSES, Step

PIPELINE_CHUNK = 500
DAY_S = 86_400


class IdempotencyConflict(CardloadError):
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
class Lease:
    """The right to run one step of one job, until another delivery takes it over."""

    job_id: str
    fence: str


class FenceLost(CardloadError):
    """A write on behalf of a step was refused: its lease expired and another delivery
    of the job holds it now. Nothing was written; the step must not assume it was."""

    def __init__(self, lease: Lease, holder: str) -> None:
        super().__init__(
            f"job {lease.job_id}: lease {lease.fence} was taken over by {holder or 'nobody'}"
        )
        self.lease = lease
        self.holder = holder


@dataclass(frozen=True)
class Claimed:
    lease: Lease
    record: JobRecord  # as the claim left it (history not loaded)
    attempt: int
    previous: JobStatus
    took_over: bool  # the expired lease of another delivery was taken over
    unsettled_before: bool  # a start may have been sent and not settled before this
    server_ms: int  # Redis's clock when the claim was made


Unclaimed = Literal["missing", "finished", "proceed", "redirect", "busy", "locked"]
_UNCLAIMED: dict[str, Unclaimed] = {reason: reason for reason in get_args(Unclaimed)}


@dataclass(frozen=True)
class NotClaimed:
    reason: Unclaimed
    status: str | None = None
    locked_ms: int = 0


@dataclass(frozen=True)
class Announcement:
    """A result event as the scripts append it to the stream (once per ``event_id``)."""

    event_id: str
    type: str
    data: str  # the event as JSON

    @property
    def flag(self) -> str:
        return f"event:{self.event_id}"


def _fields(flat: Sequence[Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}


@functools.lru_cache(maxsize=4096)
def _parsed_job(raw: str) -> CardLoadJob:
    return CardLoadJob.model_validate_json(raw)


def _job(raw: str) -> CardLoadJob:
    """A job's spec never changes: parsed once per process, not at every claim and read
    of the record. Shared only where nothing in it can be changed in place (the model
    is frozen; its contact, a wire model, and its lists are not)."""
    job = _parsed_job(raw)
    if job.customer_contact is None and not job.extra_lines:
        return job
    return CardLoadJob.model_validate_json(raw)


# Redis keeps a small hash in its compact encoding (a listpack: about a third of the
# memory) only while every value is at most 64 bytes (``hash-max-listpack-value``), so
# the spec is stored in pieces of at most that: ``job.0``, ``job.1``, ... Records of
# cardload 0.2 and earlier hold it whole in ``job``.
_SPEC_PIECE = 64
_MAX_PIECES = 100
_SPEC = "job."
_ACCEPTED = "accepted"


def _spec_fields(job: CardLoadJob) -> list[str]:
    """The spec as field/value pairs, its JSON cut at UTF-8 character boundaries. A
    spec of more than ``_MAX_PIECES`` pieces (a long basket) stays whole in ``job``:
    past 128 fields Redis leaves the compact encoding anyway, and Lua's ``unpack``
    takes only so many arguments."""
    raw = job.model_dump_json(exclude_defaults=True).encode()
    if len(raw) > _SPEC_PIECE * _MAX_PIECES:
        return ["job", raw.decode()]
    pairs: list[str] = []
    start = 0
    while start < len(raw):
        end = min(start + _SPEC_PIECE, len(raw))
        while end < len(raw) and raw[end] & 0xC0 == 0x80:  # inside a character
            end -= 1
        pairs += [f"{_SPEC}{len(pairs) // 2}", raw[start:end].decode()]
        start = end
    return pairs


def _spec(f: dict[str, str]) -> str:
    if "job" in f:
        return f["job"]
    pieces = sorted((int(k.removeprefix(_SPEC)), v) for k, v in f.items() if k.startswith(_SPEC))
    return "".join(v for _, v in pieces)


def _record(f: dict[str, str], history: Sequence[bytes | str] | None = None) -> JobRecord | None:
    """The record from its hash; its history too where read (``history`` not None)."""
    if not f:
        return None
    enqueued_at = datetime.fromisoformat(f["enqueued_at"])
    entries = [HistoryEntry.model_validate_json(h) for h in history or ()]
    if history is not None and not (entries and entries[0].note == _ACCEPTED):
        # Not stored since cardload 0.3 (a queued job's memory): said by enqueued_at.
        entries.insert(0, HistoryEntry(at=enqueued_at, status=JobStatus.QUEUED, note=_ACCEPTED))
    return JobRecord(
        job=_job(_spec(f)),
        status=JobStatus(f["status"]),
        transaction_id=f.get("transaction_id") or None,
        attempts={
            k.removeprefix("attempts_"): int(v)
            for k, v in f.items()
            if k.startswith("attempts_") and int(v)
        },
        generation=int(f.get("generation", 0)),
        reconcile=f.get("reconcile") == "1",
        load_uncertain=f.get("start_unsettled") == "1",
        dispatched=f.get("dispatched") == "1",
        enqueued_at=enqueued_at,
        updated_at=datetime.fromisoformat(f["updated_at"]) if "updated_at" in f else enqueued_at,
        result=LoadResult.model_validate_json(f["result"]) if f.get("result") else None,
        error=ErrorInfo.model_validate_json(f["error"]) if f.get("error") else None,
        pending_since_ms=int(f["pending_since_ms"]) if f.get("pending_since_ms") else None,
        history=entries,
        events=[v for k, v in f.items() if k.startswith("event:")],
    )


def _entry(entry: HistoryEntry, at: datetime) -> str:
    return entry.model_copy(update={"at": at}).model_dump_json(exclude_none=True)


class JobStore:
    def __init__(
        self,
        client: redis.Redis,
        *,
        stream: str = "cardload:events",
        stream_maxlen: int = 1_000_000,
        dead_letters: str = "cardload:dead_letters",
        jobs_retention_s: float = 30 * DAY_S,
        keys_retention_s: float = 400 * DAY_S,
        events_retention_s: float = 7 * DAY_S,
    ) -> None:
        if keys_retention_s < jobs_retention_s:
            raise ValueError("idempotency keys must be kept at least as long as job records")
        self.redis = client
        self.stream = stream
        self.stream_maxlen = stream_maxlen
        self.dead_letters = dead_letters
        # How long a succeeded job's record and its keys are kept, and result events.
        self.jobs_retention_ms = int(jobs_retention_s * 1000)
        self.keys_retention_ms = int(keys_retention_s * 1000)
        self.events_retention_ms = int(events_retention_s * 1000)
        register = client.register_script
        self._admit = register(scripts.ADMIT)
        self._claim = register(scripts.CLAIM)
        self._renew = register(scripts.RENEW)
        self._release = register(scripts.RELEASE)
        self._finish = register(scripts.FINISH_STEP)
        self._succeed = register(scripts.SUCCEED)
        self._dead_letter = register(scripts.DEAD_LETTER)
        self._reopen = register(scripts.REOPEN)
        self._note = register(scripts.NOTE)
        self._touch = register(scripts.TOUCH)
        self._announce = register(scripts.ANNOUNCE)
        self._mark_dispatched = register(scripts.MARK_DISPATCHED)
        self._alias = register(scripts.ALIAS)
        self._purge = register(scripts.PURGE)
        self._scripts = [value for value in vars(self).values() if isinstance(value, Script)]

    def load_scripts(self) -> None:
        """Load every script into Redis now (one round trip), not at its first call."""
        pipe = self.redis.pipeline(transaction=False)
        for script in self._scripts:
            pipe.script_load(script.script)
        pipe.execute()

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
        self._admit(
            keys=[keys.idempotency(job.idempotency_key), keys.job(job.job_id), keys.ACTIVE],
            args=[job.job_id, job.fingerprint(), now_utc().isoformat(), *_spec_fields(job)],
            client=pipe,
        )

    def mark_dispatched(self, job_ids: Iterable[str]) -> None:
        """Note that each job's first message was sent (never on a record that is gone)."""
        ids = list(job_ids)
        # One script call per chunk, not in a pipeline: a pipeline of scripts asks
        # SCRIPT EXISTS first, one more round trip.
        for start in range(0, len(ids), PIPELINE_CHUNK):
            chunk = ids[start : start + PIPELINE_CHUNK]
            self._mark_dispatched(keys=[keys.job(job_id) for job_id in chunk])

    def replicated(
        self, idempotency_keys: Sequence[str], replicas: int, timeout_s: float
    ) -> tuple[int, int]:
        """How many of these keys the server holds, and how many replicas hold every write
        made so far, on any connection (a replica's offset covers all that came before),
        waiting up to ``timeout_s``. One connection for all (a pipeline), so both answers
        are the same server's: after a failover the keys its predecessor took are missing.
        WAIT counts this connection's own writes, hence the mark before it."""
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, len(idempotency_keys), PIPELINE_CHUNK):
            chunk = idempotency_keys[start : start + PIPELINE_CHUNK]
            pipe.exists(*[keys.idempotency(key) for key in chunk])
        pipe.set(keys.REPLICATION_MARK, "1", px=60_000)
        pipe.wait(replicas, max(1, int(timeout_s * 1000)))
        *held, _, acked = pipe.execute()
        return sum(int(n) for n in held), int(acked)

    def dispatched_many(self, job_ids: Sequence[str]) -> dict[str, bool]:
        """Whether each job's first message was sent (pipelined). A job whose key is
        known and whose record is gone counts as sent: it succeeded (or was purged) and
        its record expired; sending it again could only find nothing, or load again."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(keys.job(job_id), "dispatched", "status")
        return {
            jid: dispatched in (b"1", "1") or status is None
            for jid, (dispatched, status) in zip(job_ids, pipe.execute(), strict=True)
        }

    def job_id_for_key(self, key: str) -> str | None:
        return self.job_ids_for_keys([key])[0]

    def add_keys(self, aliases: Sequence[tuple[CardLoadJob, str]]) -> None:
        """Let each job also answer to another job's key (same content, another key):
        a later admission under that key finds this job, not a second load. A key taken
        meanwhile stays with whoever took it. The new key expires as the job's own does
        (``CARDLOAD_RETENTION_KEYS_S`` after its success)."""
        pipe = self.redis.pipeline(transaction=False)
        for keyed, job_id in aliases:
            self._alias(
                keys=[
                    keys.idempotency(keyed.idempotency_key),
                    keys.job(job_id),
                    keys.aliases(job_id),
                ],
                args=[f"{job_id} {keyed.fingerprint()}", self.keys_retention_ms],
                client=pipe,
            )
        pipe.execute()

    def job_ids_for_keys(self, idempotency_keys: Sequence[str]) -> list[str | None]:
        """The job admitted under each key, or None (pipelined). A key outlives its job's
        record (``CARDLOAD_RETENTION_KEYS_S``): the id of a job that finished and was
        forgotten is still returned, so the key still keeps its load from being made
        again; :meth:`load` then finds no record."""
        pipe = self.redis.pipeline(transaction=False)
        for key in idempotency_keys:
            pipe.get(keys.idempotency(key))
        return [text(v).partition(" ")[0] if v else None for v in pipe.execute()]

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
                else ((r, None) for r in replies)
            )
            out += [_record({text(k): text(v) for k, v in raw.items()}, h) for raw, h in pairs]
        return out

    def keys_to_look_up(self, job_ids: Sequence[str]) -> dict[str, str]:
        """The idempotency keys of those jobs that have no transaction yet, one round
        trip (the spec parsed as a claim will parse it: the claim then finds it cached)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(keys.job(job_id))
        out: dict[str, str] = {}
        for job_id, raw in zip(job_ids, pipe.execute(), strict=True):
            f = {text(k): text(v) for k, v in raw.items()}
            if f and not f.get("transaction_id"):
                out[job_id] = _job(_spec(f)).idempotency_key
        return out

    def server_time(self) -> float:
        """Redis's clock (unix seconds): the one every lease and progress score uses."""
        seconds, micros = self.redis.time()
        return seconds + micros / 1e6

    def stalled(self, older_than_ts: float, limit: int = 1000) -> list[str]:
        """Unfinished jobs without progress since ``older_than_ts`` (Redis's unix seconds)."""
        ids: Any = self.redis.zrangebyscore(keys.ACTIVE, "-inf", older_than_ts, start=0, num=limit)
        return [text(i) for i in ids]

    # --- claiming a step ---------------------------------------------------------------

    def claim(
        self, job_id: str, step: Step, *, lease_ms: int, max_attempts: int
    ) -> Claimed | NotClaimed:
        """One round trip: read the record, take the step's lease (unless another
        delivery holds it), count the attempt, note where the record may be stale."""
        statuses = STEP_STATUSES[step]
        now = now_utc()
        entry = HistoryEntry(at=now, status=statuses.running, step=step)
        # Only a create can find its transaction known (a replay): no entry for a start.
        known = (
            HistoryEntry(
                at=now, status=JobStatus.CREATED, note="transaction known: no create"
            ).model_dump_json(exclude_none=True)
            if step == "create"
            else ""
        )
        reply = self._claim(
            keys=[keys.job(job_id), keys.history(job_id), keys.ACTIVE],
            args=[
                job_id,
                step,
                ",".join(s.value for s in statuses.claimable),
                statuses.running.value,
                entry.model_dump_json(exclude_none=True),
                lease_ms,
                max_attempts,
                now.isoformat(),
                known,
            ],
        )
        kind = text(reply[0])
        if kind != "claimed":
            status = text(reply[1]) if len(reply) > 1 and kind != "locked" else None
            locked_ms = int(text(reply[1])) if kind == "locked" else 0
            return NotClaimed(_UNCLAIMED[kind], status, locked_ms)
        fence, attempt, previous, holder, unsettled, now_ms = (text(v) for v in reply[1:7])
        record = _record(_fields(reply[7]))
        assert record is not None
        return Claimed(
            Lease(job_id, fence),
            record,
            int(attempt),
            JobStatus(previous),
            took_over=bool(holder),
            unsettled_before=unsettled == "1",
            server_ms=int(now_ms),
        )

    def renew(self, leases: Sequence[Lease], lease_ms: int) -> list[bool]:
        """Extend each lease that is still ours (pipelined); False where it was taken."""
        pipe = self.redis.pipeline(transaction=False)
        for lease in leases:
            self._renew(keys=[keys.job(lease.job_id)], args=[lease.fence, lease_ms], client=pipe)
        return [bool(int(v)) for v in pipe.execute()]

    def release(self, lease: Lease) -> bool:
        """Give the lease back without writing anything else (a step that bailed out)."""
        return bool(self._release(keys=[keys.job(lease.job_id)], args=[lease.fence]))

    # --- the fenced writes that end a step ------------------------------------------------

    def finish_step(
        self,
        lease: Lease,
        entry: HistoryEntry,
        fields: Mapping[str, str | int] | None = None,
        *,
        give_back: Step | None = None,
        push: tuple[str, str] | None = None,
    ) -> None:
        """Record how the step ended (and ``fields``), give the lease back, and with
        ``give_back`` the attempt the claim counted (the step only waited). ``push``,
        a list of this Redis and a message, is pushed by the same script (the next
        step's message where this Redis is the broker), first: a push Redis refuses
        leaves nothing written."""
        now = now_utc()
        pairs = [x for pair in (fields or {}).items() for x in pair]
        job_keys = self._job_keys(lease.job_id)
        self._fenced(
            lease,
            self._finish(
                keys=[*job_keys, push[0]] if push else job_keys,
                args=[
                    lease.job_id,
                    lease.fence,
                    _entry(entry, now),
                    now.isoformat(),
                    f"attempts_{give_back}" if give_back else "",
                    push[1] if push else "",
                    *pairs,
                ],
            ),
        )

    def succeed(
        self, lease: Lease, result: LoadResult, entry: HistoryEntry, event: Announcement
    ) -> None:
        """The job succeeded and its event is out, in one script: never one alone."""
        now = now_utc()
        self._fenced(
            lease,
            self._succeed(
                keys=[*self._job_keys(lease.job_id), self.stream, keys.aliases(lease.job_id)],
                args=[
                    lease.job_id,
                    lease.fence,
                    _entry(entry, now),
                    now.isoformat(),
                    result.model_dump_json(),
                    self.jobs_retention_ms,
                    self.keys_retention_ms,
                    keys.IDEMPOTENCY,
                    *self._event_args(event),
                ],
            ),
        )

    def dead_letter(
        self,
        lease: Lease,
        *,
        error: ErrorInfo,
        load_uncertain: bool,
        letter: str,
        entry: HistoryEntry,
        event: Announcement,
    ) -> None:
        """Dead-letter the job: status, its entry in the store and its failed event."""
        now = now_utc()
        job_id = lease.job_id
        self._fenced(
            lease,
            self._dead_letter(
                keys=[
                    *self._job_keys(job_id),
                    self.dead_letters,
                    keys.dead_letter(self.dead_letters, job_id),
                    self.stream,
                ],
                args=[
                    job_id,
                    lease.fence,
                    _entry(entry, now),
                    now.isoformat(),
                    error.model_dump_json(),
                    int(load_uncertain),
                    letter,
                    *self._event_args(event),
                ],
            ),
        )

    # --- outside a step ------------------------------------------------------------------

    def reopen(self, job_id: str) -> bool:
        """Take a dead-lettered job out of the store and back to ``queued`` for a replay
        (without its transaction if that one's payment failed), kept with its keys until
        it ends again."""
        now = now_utc()
        entry = HistoryEntry(at=now, status=JobStatus.QUEUED, note="replayed from dead letters")
        previous = self._reopen(
            keys=[
                *self._job_keys(job_id),
                self.dead_letters,
                keys.dead_letter(self.dead_letters, job_id),
                keys.aliases(job_id),
            ],
            args=[
                job_id,
                entry.model_dump_json(exclude_none=True),
                now.isoformat(),
                PAYMENT_FAILED,
                keys.IDEMPOTENCY,
            ],
        )
        return text(previous) == JobStatus.DEAD_LETTERED

    def forget(
        self,
        job_id: str,
        *,
        updated_at: str,
        statuses: Iterable[JobStatus],
        keys_left_ms: int,
    ) -> tuple[bool, int, int]:
        """Delete a finished job's record, history and dead-letter entry, if its status
        is one of ``statuses`` and its ``updated_at`` (as read, '' if none) is unchanged.
        Its idempotency keys are deleted if ``keys_left_ms`` <= 0, else kept (with that
        long left if they had no expiry). Returns (deleted, keys deleted, dead-letter
        entries deleted)."""
        reply = self._purge(
            keys=[
                keys.job(job_id),
                keys.history(job_id),
                keys.aliases(job_id),
                self.dead_letters,
                keys.dead_letter(self.dead_letters, job_id),
            ],
            args=[
                job_id,
                updated_at,
                ",".join(s.value for s in statuses),
                keys.IDEMPOTENCY,
                keys_left_ms,
            ],
        )
        if not int(reply[0]):
            return False, 0, 0
        return True, int(reply[1]), int(reply[2])

    def announce(self, job_id: str, event: Announcement) -> bool:
        """Append a succeeded job's event unless it is out already."""
        return bool(
            self._announce(keys=[keys.job(job_id), self.stream], args=self._event_args(event))
        )

    def touch(self, job_id: str) -> None:
        """Count as progress for the stall sweep (the job waits, alive, for a token)."""
        self._touch(keys=[keys.ACTIVE], args=[job_id])

    def set_aside(self, job_id: str) -> None:
        """Take a job whose record cannot be read out of the stall watch (where it would
        keep the sweep from the jobs behind it) and into a set for a person to look at."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(keys.ACTIVE, job_id)
        pipe.sadd(keys.SET_ASIDE, job_id)
        pipe.execute()

    def record(self, job_id: str, entry: HistoryEntry) -> None:
        """Add a history entry (a note) without changing the status; counts as progress."""
        now = now_utc()
        self._note(keys=self._job_keys(job_id), args=[job_id, _entry(entry, now), now.isoformat()])

    # --- plumbing --------------------------------------------------------------------------

    @staticmethod
    def _job_keys(job_id: str) -> list[str]:
        return [keys.job(job_id), keys.history(job_id), keys.ACTIVE]

    def _event_args(self, event: Announcement) -> list[str | int]:
        return [
            event.flag,
            event.event_id,
            event.type,
            event.data,
            self.stream_maxlen,
            self.events_retention_ms,
        ]

    @staticmethod
    def _fenced(lease: Lease, reply: Any) -> None:
        if text(reply[0]) == "fenced":
            raise FenceLost(lease, text(reply[1]))


def job_store(client: redis.Redis, settings: Settings) -> JobStore:
    """The store with the stream and dead-letter names and the retention of these
    settings."""
    events, retention = settings.events, settings.retention
    return JobStore(
        client,
        stream=events.stream,
        stream_maxlen=events.stream_maxlen,
        dead_letters=events.dead_letters,
        jobs_retention_s=retention.jobs_s,
        keys_retention_s=retention.keys_s,
        events_retention_s=retention.events_s,
    )
