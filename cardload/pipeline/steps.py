"""The two steps of a card load, each safe to run any number of times, by any number of
deliveries at once.

Exactly-once effect comes from the job record and the API, not from message delivery:

* a step first claims its job (one script): a lease with a fencing token, its attempt
  counted. Every write that ends the step names the token; a delivery whose lease was
  taken over (it froze, or overran the lease) has its writes refused and runs again
  later, reading the API first;
* create is skipped once the job has a transaction. Before a create the transaction is
  looked up by ``merchantRef`` (always by default; with ``after_doubt`` only when the
  record may not show everything done before: a retry, a replay, a takeover, another
  Redis); only the job's own transaction is adopted, and one for other content under
  the key is a conflict. A create that lands after the lookup stays ``created``;
* start reads the transaction before repeating after any doubt: a paid status (``ok``,
  ``received``, ...) is success, ``created`` means start now, still in flight (or a
  status we do not know) means wait, a failed one (``failed``, ``cancelled``, ...) is
  a failure at once (:mod:`secuconnect.statuses` has each). A refused start is checked
  the same way (another delivery may have started it). Before a start failure becomes
  final the transaction is read once more;
* success and its result event are one write; a dead letter, its entry and its failed
  event are one write. ``load_uncertain`` says whether the card may have been loaded.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from cardload.config import Settings
from cardload.deadletters.store import DeadLetter
from cardload.jobs.leases import LeaseKeeper
from cardload.jobs.model import (
    PAYMENT_FAILED,
    CardLoadJob,
    ErrorInfo,
    HistoryEntry,
    JobStatus,
    now_utc,
)
from cardload.jobs.routing import STEP_STATUSES, Step
from cardload.jobs.store import Claimed, FenceLost, JobStore, Lease, NotClaimed
from cardload.observability import bind_job, get_logger, mask_text
from cardload.observability.metrics import (
    DEAD_LETTERED,
    STEP_ATTEMPTS,
    STEP_DURATION,
    STEP_RETRIES,
    SUCCEEDED,
)
from cardload.pipeline.lookups import MerchantRefLookups
from cardload.pipeline.outcome import Continue, Finished, NextMessage, Outcome, RetryLater
from cardload.pipeline.prefetch import LookupPrefetch
from cardload.pipeline.request import build_create_request, transaction_mismatch
from cardload.pipeline.results import announcement, failed_event, load_result, succeeded_event
from cardload.secuconnect import (
    CallHeldError,
    KeyConflictError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    SecuconnectClient,
    SecuconnectError,
    SmartTransaction,
    TokenUnavailableError,
    TransactionStatus,
)
from cardload.secuconnect.backoff import backoff_delay_s
from cardload.secuconnect.statuses import is_ended_unknown, is_failed, is_paid

log = get_logger(__name__)

_CREATED = TransactionStatus.CREATED.value
_OUTCOME_KINDS: dict[type, str] = {Continue: "continue", RetryLater: "retry", Finished: "finished"}


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
class StartWatch:
    """Whether a start may have loaded the card without our having seen it: from the
    POST of a start until a read or an answer shows what became of it (a paid or a
    failed status). Reading "created" settles nothing: an unanswered start, ours or a
    frozen delivery's, may still land after the read."""

    unsettled: bool

    def observe(self, tx: SmartTransaction) -> None:
        # Paid or failed tells what became of a start. "created" does not: a start that
        # was sent and not answered may still land after the read. Any other status (in
        # flight, or one we do not know) may yet load the card, or already has.
        if is_paid(tx.status) or is_failed(tx.status):
            self.unsettled = False
        elif tx.status != _CREATED:
            self.unsettled = True  # in flight, or a status we do not know


@dataclass
class Pipeline:
    store: JobStore
    client: SecuconnectClient
    leases: LeaseKeeper
    settings: Settings
    uniform: Callable[[], float] = field(default=random.random)
    lookups: MerchantRefLookups = field(init=False)
    prefetch: LookupPrefetch = field(init=False)

    def __post_init__(self) -> None:
        search = self.client.find_by_merchant_refs
        self.lookups = MerchantRefLookups(search)
        always = self.settings.jobs.create_lookup == "always"
        self.prefetch = LookupPrefetch(self.store, search, enabled=always)

    # --- entry points (one per task) ---------------------------------------------------

    def create(self, job_id: str, next_message: NextMessage | None = None) -> Outcome:
        """``next_message``: the start's message, pushed with the create's end if given
        (``Continue.queued``); otherwise the task sends it."""
        return self._step(job_id, "create", lambda claim: self._create(claim, next_message))

    def start(self, job_id: str) -> Outcome:
        return self._step(job_id, "start", self._start)

    def publish(self, job_id: str) -> Outcome:
        """cardload 0.1's third step: announce a job that succeeded without its event."""
        record = self.store.load(job_id, history=False)
        if record is None or record.status is not JobStatus.SUCCEEDED or record.result is None:
            return Finished("nothing to publish")
        mask = self.settings.events.mask_card_numbers
        event = succeeded_event(record, record.result, mask=mask, now=record.updated_at)
        self.store.announce(job_id, announcement(event))
        return Finished("published")

    # --- create --------------------------------------------------------------------------

    def _create(self, claim: Claimed, next_message: NextMessage | None = None) -> Outcome:
        record = claim.record
        if claim.attempt > self.settings.retry.max_attempts:
            return self._exhausted(claim, "create", None)
        doubt = (
            claim.attempt > 1 or record.reconcile or self.settings.jobs.create_lookup == "always"
        )
        looked_up = False
        try:
            # Looked up while the message waited, on a first attempt without doubt
            # (prefetch.py says why that is enough); otherwise now.
            first = claim.attempt == 1 and not record.reconcile
            wait_s = self.settings.secuconnect.read_timeout_s
            ahead = self.prefetch.take(record.job.job_id, wait_s) if first else None
            tx, foreign = self._find_created(record.job, ahead) if doubt else (None, None)
            looked_up = doubt
            if tx is None and foreign is not None:
                raise KeyConflictError(foreign)
            adopted = tx is not None
            if tx is None:
                self._still_leased(claim.lease)
                secu = self.settings.secuconnect
                assert secu.contract_id and secu.device_id
                request = build_create_request(
                    record.job, contract_id=secu.contract_id, device_id=secu.device_id
                )
                tx = self.client.create(request)
        except SecuconnectError as exc:
            # The lookup asks whether an earlier load under this key exists (the record
            # may have lost it); a failure before it answered cannot say "not loaded".
            return self._failed(claim, "create", exc, StartWatch(doubt and not looked_up))
        log.info("transaction.found" if adopted else "transaction.created", transaction_id=tx.id)
        job_id = record.job.job_id
        push = next_message("start", job_id) if next_message else None
        self.store.finish_step(
            claim.lease,
            HistoryEntry(status=JobStatus.CREATED, step="create", transaction_id=tx.id),
            # An adopted transaction may have been started already: start reads it first.
            {"status": JobStatus.CREATED.value, "transaction_id": tx.id, "reconcile": int(adopted)},
            push=push,
        )
        return Continue("start", queued=push is not None)

    def _find_created(
        self, job: CardLoadJob, ahead: list[SmartTransaction] | None = None
    ) -> tuple[SmartTransaction | None, str | None]:
        """The job's transaction, if an earlier create made one, and else what holds its
        key at the API for other content (a conflict), if anything. Each candidate is
        read (a search index may lag behind a start) and must be for the job's card and
        amount; every status but a failed one counts, and one paid, being paid,
        or in a status we do not know wins over one still created. The others are never
        started."""
        key = job.idempotency_key
        listed = ahead if ahead is not None else self.lookups.find(key)
        listed = [tx for tx in listed if tx.merchant_ref == key]
        found = [tx for tx in map(self._reread, listed) if tx and not is_failed(tx.status)]
        ours = [tx for tx in found if transaction_mismatch(job, tx) is None]
        foreign = {tx.id: transaction_mismatch(job, tx) for tx in found if tx not in ours}
        if foreign:
            log.warning("transaction.foreign", merchant_ref=key, transactions=foreign)
        if len(ours) > 1:
            log.warning("transaction.duplicates", merchant_ref=key, ids=[tx.id for tx in ours])
        started = [tx for tx in ours if tx.status != _CREATED]
        if ours:
            return (started or ours)[0], None
        if foreign:
            tx_id, why = next(iter(foreign.items()))
            return None, f"merchantRef {key!r} is taken at the API by {tx_id}, and {why}"
        return None, None

    def _reread(self, tx: SmartTransaction) -> SmartTransaction | None:
        try:
            return self.client.get(tx.id)
        except NotFoundError:
            return None  # listed, gone since: not a candidate

    # --- start ----------------------------------------------------------------------------

    def _start(self, claim: Claimed) -> Outcome:
        watch = StartWatch(claim.unsettled_before)
        if claim.attempt > self.settings.retry.max_attempts:
            return self._exhausted(claim, "start", watch)
        try:
            tx = self._pay(claim, watch)
        except SecuconnectError as exc:
            return self._failed(claim, "start", exc, watch)
        if is_paid(tx.status):
            return self._succeed(claim, tx)
        if is_failed(tx.status):
            # Final (README, "Choices"): reading it again would change nothing.
            info = ErrorInfo(kind=PAYMENT_FAILED, message=f"transaction {tx.id} is {tx.status}")
            return self._dead_letter(claim, info, watch)
        if is_ended_unknown(tx.status):
            # Final, and no source says whether it paid: possibly loaded, for a person.
            message = f"transaction {tx.id} is {tx.status}: check the card before a replay"
            return self._dead_letter(claim, ErrorInfo(kind="uncertain", message=message), watch)
        # Payment still under way (or a status we do not know): read again later.
        return self._wait_for_payment(claim, tx, watch)

    def _pay(self, claim: Claimed, watch: StartWatch) -> SmartTransaction:
        record = claim.record
        tx_id = record.transaction_id
        assert tx_id is not None
        if claim.attempt > 1 or record.reconcile or claim.unsettled_before:
            # An earlier start may have loaded the card: read before repeating it.
            tx = self._read(tx_id, watch)
            if tx.status != _CREATED:
                return tx
        self._still_leased(claim.lease)
        before, watch.unsettled = watch.unsettled, True
        try:
            method = record.job.payment_method or self.settings.secuconnect.start_method
            tx = self.client.start(tx_id, method)
        except RetryableError:
            watch.unsettled = before  # refused before it was processed: nothing happened
            raise
        except PermanentError:
            # "Not allowed" may mean another delivery started it (and may be loading now).
            tx = self._read(tx_id, watch)
            if tx.status == _CREATED:
                watch.unsettled = before  # this start was refused; earlier ones stay open
                raise
            return tx
        watch.observe(tx)
        return tx

    def _read(self, tx_id: str, watch: StartWatch) -> SmartTransaction:
        tx = self.client.get(tx_id)
        watch.observe(tx)
        log.info("transaction.read", status=tx.status)
        return tx

    def _wait_for_payment(self, claim: Claimed, tx: SmartTransaction, watch: StartWatch) -> Outcome:
        """Read an in-flight payment again later; the wait gives the attempt back (it is
        not a try), until the payment timeout makes it a dead letter, possibly loaded."""
        since_ms = claim.record.pending_since_ms or claim.server_ms  # Redis's clock
        waited_s = (claim.server_ms - since_ms) / 1000
        info = ErrorInfo(kind="pending", message=f"transaction {tx.id} is {tx.status}")
        if waited_s > self.settings.jobs.payment_timeout_s:
            message = f"{info.message} {waited_s:.0f} s after it was first seen so"
            return self._dead_letter(claim, info.model_copy(update={"message": message}), watch)
        retry = self.settings.retry
        # About as long again as it has been in flight: few reads for a slow payment.
        ceiling = min(retry.max_backoff_s, max(retry.base_backoff_s, waited_s))
        delay = ceiling * (0.5 + self.uniform() / 2)
        entry = HistoryEntry(
            status=JobStatus.STARTING,
            step="start",
            attempt=claim.attempt,
            error=info,
            note=f"payment {tx.status}: read again in {delay:.1f} s",
        )
        fields: dict[str, str | int] = {
            "start_unsettled": int(watch.unsettled),
            "pending_since_ms": since_ms,
        }
        self.store.finish_step(claim.lease, entry, fields, give_back="start")
        STEP_RETRIES.labels("start", "pending").inc()
        log.info("payment.pending", status=tx.status, delay_s=round(delay, 2))
        return RetryLater(delay, info.message)

    # --- how a claimed step ends -------------------------------------------------------------

    def _succeed(self, claim: Claimed, tx: SmartTransaction) -> Outcome:
        result = load_result(tx)
        mask = self.settings.events.mask_card_numbers
        event = succeeded_event(claim.record, result, mask=mask, now=now_utc())
        entry = HistoryEntry(status=JobStatus.SUCCEEDED, step="start", transaction_id=tx.id)
        self.store.succeed(claim.lease, result, entry, announcement(event))
        SUCCEEDED.inc()
        log.info(
            "card.loaded",
            amount_cents=claim.record.job.amount_cents,
            total_cents=result.total_cents,
        )
        return Finished("succeeded")

    def _failed(
        self, claim: Claimed, step: Step, exc: SecuconnectError, watch: StartWatch | None
    ) -> Outcome:
        info = error_info(exc)
        if isinstance(exc, TokenUnavailableError | CallHeldError):
            # No token mid-step (a refused token could not be replaced), or the call held
            # back by the shared breaker or rate limit (never sent): the job waits, the
            # attempt is given back, and it is never a reason to dead-letter.
            return self._retry(claim, step, info, watch, exc.retry_after_s, give_back=True)
        if isinstance(exc, PermanentError):
            return self._dead_letter(claim, info, watch)
        if claim.attempt >= self.settings.retry.max_attempts:
            message = f"{info.message} (after {claim.attempt} attempts)"
            return self._dead_letter(claim, info.model_copy(update={"message": message}), watch)
        retry_after = exc.retry_after_s if isinstance(exc, RateLimitedError) else None
        return self._retry(claim, step, info, watch, retry_after)

    def _exhausted(self, claim: Claimed, step: Step, watch: StartWatch | None) -> Outcome:
        used = claim.attempt - 1
        info = ErrorInfo(kind="exhausted", message=f"{step}: {used} attempts used up")
        return self._dead_letter(claim, info, watch)

    def _retry(
        self,
        claim: Claimed,
        step: Step,
        info: ErrorInfo,
        watch: StartWatch | None,
        retry_after: float | None = None,
        *,
        give_back: bool = False,
    ) -> Outcome:
        retry = self.settings.retry
        delay = backoff_delay_s(
            claim.attempt,
            base_s=retry.base_backoff_s,
            cap_s=retry.max_backoff_s,
            uniform=self.uniform,
            retry_after_s=retry_after,
        )
        entry = HistoryEntry(
            status=STEP_STATUSES[step].running,
            step=step,
            attempt=claim.attempt,
            error=info,
            note=f"retry in {delay:.1f} s",
        )
        fields = {"start_unsettled": int(watch.unsettled)} if watch and step == "start" else {}
        self.store.finish_step(claim.lease, entry, fields, give_back=step if give_back else None)
        STEP_RETRIES.labels(step, info.kind).inc()
        log.warning(
            "step.retry",
            error_kind=info.kind,
            error=info.message,
            http_status=info.http_status,
            delay_s=round(delay, 2),
        )
        return RetryLater(delay, info.message)

    def _dead_letter(
        self, claim: Claimed, info: ErrorInfo, watch: StartWatch | None, *, settle: bool = True
    ) -> Outcome:
        record = claim.record
        if settle and watch is not None and watch.unsettled and record.transaction_id:
            # Before the failure is final, settle what an unanswered start may have done.
            try:
                tx = self._read(record.transaction_id, watch)
            except (CallHeldError, TokenUnavailableError) as exc:
                # Not read because every call waits (breaker, rate limit, no token): the
                # job waits too, unsettled, instead of ending as possibly loaded.
                info = error_info(exc)
                return self._retry(claim, "start", info, watch, exc.retry_after_s, give_back=True)
            except SecuconnectError as exc:
                log.warning("transaction.unreadable", error=exc.message)
            else:
                if is_paid(tx.status):
                    return self._succeed(claim, tx)
        uncertain = bool(watch and watch.unsettled)
        now = now_utc()
        full = self.store.load(record.job.job_id) or record  # with history, for the letter
        letter = DeadLetter(
            job=record.job,
            error=info,
            transaction_id=record.transaction_id,
            attempts=record.attempts,
            generation=record.generation,
            history=full.history,
            dead_lettered_at=now,
            load_uncertain=uncertain,
        )
        mask = self.settings.events.mask_card_numbers
        event = failed_event(record, info, load_uncertain=uncertain, mask=mask, now=now)
        entry = HistoryEntry(
            status=JobStatus.DEAD_LETTERED,
            note="dead-lettered",
            error=info,
            transaction_id=record.transaction_id,
        )
        self.store.dead_letter(
            claim.lease,
            error=info,
            load_uncertain=uncertain,
            letter=letter.model_dump_json(),
            entry=entry,
            event=announcement(event),
        )
        DEAD_LETTERED.inc()
        log.error(
            "job.dead_lettered",
            error_kind=info.kind,
            error=info.message,
            api_error=info.api_error,
            support_id=info.support_id,
            load_uncertain=uncertain,
        )
        return Finished("dead-lettered")

    # --- claiming ------------------------------------------------------------------------------

    def _step(self, job_id: str, step: Step, run: Callable[[Claimed], Outcome]) -> Outcome:
        """Claim the job for ``step`` and run it; whatever happens, give the lease back."""
        try:
            # Before the claim: waiting for a token, or for the API's circuit breaker,
            # costs the job no attempt.
            self.client.authenticate()
            held_s = self.client.gate.held_for()
        except TokenUnavailableError as exc:
            self.store.touch(job_id)  # alive and waiting: not for the stall sweep
            STEP_RETRIES.labels(step, "token").inc()
            return self._token_wait(exc)
        if held_s > 0:
            self.store.touch(job_id)
            STEP_RETRIES.labels(step, "held").inc()
            return self._held(held_s)
        claim = self.store.claim(
            job_id,
            step,
            lease_ms=int(self.settings.jobs.lease_s * 1000),
            max_attempts=self.settings.retry.max_attempts,
        )
        if isinstance(claim, NotClaimed):
            if claim.reason == "locked":
                STEP_RETRIES.labels(step, "locked").inc()
            return self._not_claimed(job_id, claim)
        bind_job(
            job_id, transaction_id=claim.record.transaction_id, attempt=claim.attempt, step=step
        )
        if claim.took_over:
            log.warning("lease.taken_over", previous=claim.previous.value)
        self.leases.hold(claim.lease)
        STEP_ATTEMPTS.labels(step).inc()
        began = time.perf_counter()
        outcome: Outcome | None = None
        try:
            outcome = run(claim)
        except FenceLost as exc:
            outcome = self._fence_lost(step, exc)
        except redis.RedisError:
            self._release(claim.lease)  # Redis unreachable: the task retries the step
            raise
        except Exception as exc:
            outcome = self._crashed(claim, step, exc)
        finally:
            self.leases.drop(claim.lease)
            kind = _OUTCOME_KINDS.get(type(outcome), "error")
            STEP_DURATION.labels(step, kind).observe(time.perf_counter() - began)
        return outcome

    def _fence_lost(self, step: Step, exc: FenceLost) -> Outcome:
        # Not ignored: nothing of this delivery was written, so the step runs again,
        # claims anew and reads the API before it acts.
        STEP_RETRIES.labels(step, "fence_lost").inc()
        log.warning("job.fence_lost", holder=exc.holder)
        return RetryLater(self.settings.retry.base_backoff_s, str(exc))

    def _crashed(self, claim: Claimed, step: Step, exc: Exception) -> Outcome:
        """A step that failed in a way nobody planned for (a bug, an answer we cannot
        use): retried like a failed attempt, and dead-lettered when the attempts are
        used up, without another read (that may be what fails), as possibly loaded."""
        log.exception("step.crashed", error_type=type(exc).__name__)
        info = ErrorInfo(kind="internal", message=f"{type(exc).__name__}: {mask_text(str(exc))}")
        # Whatever the step had seen is unknown: a start may have been sent, a lookup
        # for an earlier load under the key may not have answered.
        watch = StartWatch(True)
        try:
            if claim.attempt >= self.settings.retry.max_attempts:
                return self._dead_letter(claim, info, watch, settle=False)
            return self._retry(claim, step, info, None)
        except FenceLost as lost:
            return self._fence_lost(step, lost)
        except Exception:
            self._release(claim.lease)
            raise

    def _not_claimed(self, job_id: str, claim: NotClaimed) -> Outcome:
        match claim.reason:
            case "missing":
                log.error("job.unknown", job_id=job_id)
                return Finished("unknown job")
            case "proceed":
                return Continue("start")
            case "redirect":
                return Continue("create")
            case "locked":
                # Another delivery runs this job; come back when its lease would end.
                delay = min(claim.locked_ms / 1000 + 0.1, self.settings.retry.max_backoff_s)
                return RetryLater(delay, "job leased by another delivery")
            case "finished":
                return Finished(f"already {claim.status}")
            case _:
                return Finished(f"job is {claim.status}: another step has it")

    def _still_leased(self, lease: Lease) -> None:
        """Before a call with an effect: stop if the lease is known to be gone."""
        if self.leases.lost(lease):
            raise FenceLost(lease, "another delivery")

    def _release(self, lease: Lease) -> None:
        try:
            self.store.release(lease)
        except Exception as exc:  # the original error matters more than this one
            log.warning("lease.release_failed", error=str(exc))

    def _held(self, held_s: float) -> Outcome:
        # Spread over a second past the probe: the waiting jobs do not all come back at
        # once (only one of them may probe).
        delay = min(held_s + self.uniform(), self.settings.retry.max_backoff_s)
        log.info("step.held", delay_s=round(delay, 2))
        return RetryLater(delay, "calls to the API are held: its circuit breaker is open")

    def _token_wait(self, exc: TokenUnavailableError) -> Outcome:
        retry = self.settings.retry
        delay = min(max(exc.retry_after_s or 0.0, retry.base_backoff_s), retry.max_backoff_s)
        log.warning(
            "token.unavailable",
            error=exc.message,
            credentials_refused=exc.credentials_refused,
            delay_s=round(delay, 2),
        )
        return RetryLater(delay, exc.message)
