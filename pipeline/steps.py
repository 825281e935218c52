"""The three steps of a card load, each safe to run any number of times.

Exactly-once effect comes from the job record, not from message delivery:

* create is skipped once the job has a transaction id; a create that may have
  happened (a lost response, a crash) is looked up by ``merchantRef`` before a
  second one is sent;
* start is preceded by a read of the transaction whenever an earlier attempt may
  have reached the API: ``ok`` is success, ``created`` means start again,
  ``failed``/``cancelled`` is a permanent failure;
* a per-job lock keeps two deliveries of the same job from running at once, and
  our own attempt counter bounds retries (Redis counts no redeliveries).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from config import Settings
from deadletters.store import DeadLetter, DeadLetterStore
from events.stream import EventStream
from jobs.model import ErrorInfo, HistoryEntry, JobRecord, JobStatus, now_utc
from jobs.routing import Step
from jobs.store import JobStore
from observability import bind_job, get_logger
from pipeline.backoff import backoff_delay_s
from pipeline.outcome import Continue, Finished, Outcome, RetryLater
from pipeline.request import build_create_request
from pipeline.results import failed_event, load_result, succeeded_event
from secuconnect import (
    PermanentError,
    RateLimitedError,
    SecuconnectClient,
    SecuconnectError,
    SmartTransaction,
    TransactionStatus,
)

log = get_logger(__name__)

# Statuses in which the payment may still complete: wait and read again.
_IN_FLIGHT = frozenset({"processing", "approved", "pending"})
_FAILED = frozenset({TransactionStatus.FAILED.value, TransactionStatus.CANCELLED.value})
_ADOPTABLE = frozenset({TransactionStatus.CREATED.value, TransactionStatus.OK.value, *_IN_FLIGHT})


def error_info(error: SecuconnectError) -> ErrorInfo:
    api = error.api_error
    return ErrorInfo(
        kind=error.kind,
        message=error.message,
        http_status=error.http_status,
        api_error=api.error if api else None,
        api_error_details=api.error_details if api else None,
        support_id=api.support_id if api else None,
    )


@dataclass
class Pipeline:
    store: JobStore
    client: SecuconnectClient
    events: EventStream
    dead_letters: DeadLetterStore
    settings: Settings
    uniform: Callable[[], float] = field(default=random.random)

    @property
    def _lock_ttl_ms(self) -> int:
        # Longer than a step can take (a read and a write call, each within its timeouts),
        # short enough that a redelivered job waits little for a dead holder's lock.
        http = self.settings.secuconnect
        return int(((http.connect_timeout_s + http.read_timeout_s) * 2 + 5) * 1000)

    # --- create -------------------------------------------------------------------------

    def create(self, job_id: str) -> Outcome:
        record = self.store.load(job_id, history=False)
        if record is None:
            log.error("job.unknown", job_id=job_id)
            return Finished("unknown job")
        if record.status.terminal:
            return Finished(f"already {record.status}")
        if record.transaction_id:
            if record.status is JobStatus.QUEUED:  # a replay of a job that has a transaction
                self.store.transition(
                    job_id,
                    allowed=[JobStatus.QUEUED],
                    to=JobStatus.CREATED,
                    entry=HistoryEntry(
                        status=JobStatus.CREATED,
                        note="create skipped: transaction known",
                        transaction_id=record.transaction_id,
                    ),
                )
            return Continue("start")
        return self._locked(record, "create", self._create)

    def _create(self, record: JobRecord, attempt: int, previous: str) -> Outcome:
        job = record.job
        tx: SmartTransaction | None = None
        if attempt > 1 or record.reconcile:
            # An earlier create may have reached the API: find it before making another.
            tx = self._find_created(job.idempotency_key)
        if tx is None:
            secu = self.settings.secuconnect
            assert secu.contract_id and secu.device_id
            tx = self.client.create(
                build_create_request(job, contract_id=secu.contract_id, device_id=secu.device_id)
            )
            log.info("transaction.created", transaction_id=tx.id)
        else:
            log.info("transaction.found", transaction_id=tx.id, status=tx.status)
        self.store.transition(
            job.job_id,
            allowed=[JobStatus.CREATING],
            to=JobStatus.CREATED,
            entry=HistoryEntry(status=JobStatus.CREATED, step="create", transaction_id=tx.id),
            fields={"transaction_id": tx.id},
        )
        return Continue("start")

    def _find_created(self, merchant_ref: str) -> SmartTransaction | None:
        found = [
            tx for tx in self.client.find_by_merchant_ref(merchant_ref) if tx.status in _ADOPTABLE
        ]
        if len(found) > 1:
            log.warning(
                "transaction.duplicates", merchant_ref=merchant_ref, ids=[tx.id for tx in found]
            )
        # One already paid wins; otherwise the oldest. The others are never started.
        paid = [tx for tx in found if tx.status == TransactionStatus.OK]
        return (paid or found)[0] if found else None

    # --- start --------------------------------------------------------------------------

    def start(self, job_id: str) -> Outcome:
        record = self.store.load(job_id, history=False)
        if record is None:
            log.error("job.unknown", job_id=job_id)
            return Finished("unknown job")
        if record.status.terminal:
            return (
                Continue("publish")
                if record.status is JobStatus.SUCCEEDED
                else Finished(f"already {record.status}")
            )
        if not record.transaction_id:
            return Continue("create")
        return self._locked(record, "start", self._start)

    def _start(self, record: JobRecord, attempt: int, previous: str) -> Outcome:
        tx_id = record.transaction_id
        assert tx_id is not None
        method = record.job.payment_method
        if attempt > 1 or record.reconcile or previous == JobStatus.STARTING:
            # An earlier start may have loaded the card: read before repeating it.
            tx = self.client.get(tx_id)
            log.info("transaction.read", status=tx.status)
            if tx.status == TransactionStatus.CREATED:
                tx = self._start_once(tx_id, method)
        else:
            tx = self._start_once(tx_id, method)
        return self._after_start(record, tx, attempt)

    def _start_once(self, tx_id: str, method: str | None) -> SmartTransaction:
        try:
            return self.client.start(tx_id, method)
        except PermanentError:
            # "Not allowed" may mean a start we never heard back from succeeded.
            tx = self.client.get(tx_id)
            if tx.status != TransactionStatus.OK:
                raise
            return tx

    def _after_start(self, record: JobRecord, tx: SmartTransaction, attempt: int) -> Outcome:
        if tx.status == TransactionStatus.OK:
            result = load_result(tx)
            self.store.transition(
                record.job.job_id,
                allowed=[JobStatus.STARTING],
                to=JobStatus.SUCCEEDED,
                entry=HistoryEntry(status=JobStatus.SUCCEEDED, step="start", transaction_id=tx.id),
                fields={"result": result.model_dump_json(), "reconcile": "0"},
            )
            log.info(
                "card.loaded", amount_cents=record.job.amount_cents, total_cents=result.total_cents
            )
            return Continue("publish")
        if tx.status in _FAILED:
            return self._dead_letter(
                record, ErrorInfo(kind="permanent", message=f"transaction {tx.id} is {tx.status}")
            )
        # Payment still under way: not a definite answer, read again later.
        info = ErrorInfo(kind="pending", message=f"transaction {tx.id} is {tx.status}")
        return self._retry(record, "start", attempt, info)

    # --- publish ------------------------------------------------------------------------

    def publish(self, job_id: str) -> Outcome:
        record = self.store.load(job_id, history=False)
        if record is None or record.status is not JobStatus.SUCCEEDED:
            return Finished("nothing to publish")
        event = succeeded_event(record, mask=self.settings.events.mask_card_numbers)
        stream_id = self.events.publish(event)
        log.info(
            "event.published" if stream_id else "event.already_published", event_id=event.event_id
        )
        return Finished("published")

    # --- shared -------------------------------------------------------------------------

    def _locked(
        self, record: JobRecord, step: Step, run: Callable[[JobRecord, int, str], Outcome]
    ) -> Outcome:
        """Run a step under the job's lock, counting the attempt, mapping failures."""
        job_id = record.job.job_id
        lock = self.store.acquire(job_id, self._lock_ttl_ms)
        if lock is None:
            # Another delivery is running this job; come back when its lock expires.
            return RetryLater(
                self.store.lock_ttl_ms(job_id) / 1000 + 0.5, "job locked by another delivery"
            )
        try:
            allowed, to = _STEP_STATUSES[step]
            moved = self.store.transition(
                job_id,
                allowed=allowed,
                to=to,
                count_attempt_of=step,
                entry=HistoryEntry(status=to, step=step),
            )
            if not moved.applied:
                return Finished(f"job is {moved.previous}")
            bind_job(job_id, transaction_id=record.transaction_id, attempt=moved.attempt, step=step)
            if moved.attempt > self.settings.retry.max_attempts:
                return self._dead_letter(
                    record,
                    ErrorInfo(
                        kind="exhausted", message=f"{step}: {moved.attempt - 1} attempts used up"
                    ),
                )
            try:
                return run(record, moved.attempt, moved.previous)
            except SecuconnectError as exc:
                return self._failed(record, step, moved.attempt, exc)
        finally:
            self.store.release(job_id, lock)

    def _failed(
        self, record: JobRecord, step: Step, attempt: int, exc: SecuconnectError
    ) -> Outcome:
        info = error_info(exc)
        if isinstance(exc, PermanentError):
            return self._dead_letter(record, info)
        if attempt >= self.settings.retry.max_attempts:
            return self._dead_letter(
                record,
                info.model_copy(update={"message": f"{info.message} (after {attempt} attempts)"}),
            )
        retry_after = exc.retry_after_s if isinstance(exc, RateLimitedError) else None
        return self._retry(record, step, attempt, info, retry_after)

    def _retry(
        self,
        record: JobRecord,
        step: Step,
        attempt: int,
        info: ErrorInfo,
        retry_after: float | None = None,
    ) -> Outcome:
        retry = self.settings.retry
        delay = backoff_delay_s(
            attempt,
            base_s=retry.base_backoff_s,
            cap_s=retry.max_backoff_s,
            uniform=self.uniform,
            retry_after_s=retry_after,
        )
        status = JobStatus.CREATING if step == "create" else JobStatus.STARTING
        self.store.record(
            record.job.job_id,
            HistoryEntry(
                status=status,
                step=step,
                attempt=attempt,
                error=info,
                note=f"retry in {delay:.1f} s",
            ),
        )
        log.warning(
            "step.retry",
            error_kind=info.kind,
            error=info.message,
            http_status=info.http_status,
            delay_s=round(delay, 2),
        )
        return RetryLater(delay, info.message)

    def _dead_letter(self, record: JobRecord, info: ErrorInfo) -> Outcome:
        job_id = record.job.job_id
        current = self.store.load(job_id) or record
        now = now_utc()
        letter = DeadLetter(
            job=current.job,
            error=info,
            transaction_id=current.transaction_id,
            attempts=current.attempts,
            generation=current.generation,
            history=current.history,
            dead_lettered_at=now,
        )
        event = failed_event(current, info, mask=self.settings.events.mask_card_numbers, now=now)
        self.dead_letters.put(letter, event)
        log.error(
            "job.dead_lettered",
            error_kind=info.kind,
            error=info.message,
            api_error=info.api_error,
            support_id=info.support_id,
        )
        return Finished("dead-lettered")


_STEP_STATUSES: dict[Step, tuple[list[JobStatus], JobStatus]] = {
    "create": ([JobStatus.QUEUED, JobStatus.CREATING], JobStatus.CREATING),
    "start": ([JobStatus.CREATED, JobStatus.STARTING], JobStatus.STARTING),
}
