"""Enqueueing card loads: admit the job by its idempotency key, then send it.

The job record is written first and the message second, so a message never refers
to a job that does not exist; a producer that dies in between leaves an admitted,
unsent job, which the stall sweep (or enqueueing the same key again) sends.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import BatchPublishError, OperationalError

from cardload.config import LoadMethod, Settings, load_settings
from cardload.errors import CardloadError
from cardload.jobs.connection import connect
from cardload.jobs.model import CardLoadJob, ExtraLine, JobSource
from cardload.jobs.store import Admission, IdempotencyConflict, JobStore, job_store
from cardload.observability.masking import mask_card_number
from cardload.secuconnect.methods import LOAD_METHODS
from cardload.secuconnect.models import Contact
from cardload.worker import create_app, default_app
from cardload.worker.dispatch import Dispatch, send_steps


class AmountLimitError(CardloadError, ValueError):
    """A job asks for more than ``CARDLOAD_JOBS_MAX_AMOUNT_CENTS``."""


class PaymentMethodError(CardloadError, ValueError):
    """A job asks to be paid with a method a card load cannot use (README, "Choices")."""


class JobStoreUnavailable(CardloadError):
    """Redis, where jobs are admitted, could not be reached."""


class NotReplicated(JobStoreUnavailable):
    """Jobs were admitted and sent (they will run), but fewer replicas than
    ``CARDLOAD_JOBS_REPLICAS_ACK`` confirmed them in time, or the Redis answering now is
    not the one that took them (a failover): a failover could lose them. Sending the same
    keys again is safe and makes sure. ``results`` are the call's, as it would have
    returned them."""

    def __init__(
        self, message: str, results: Sequence[Admission | IdempotencyConflict] = ()
    ) -> None:
        super().__init__(message)
        self.results = list(results)


class BrokerUnavailable(CardloadError):
    """Jobs were admitted but their messages could not be sent."""


@dataclass
class CardLoadProducer:
    """Admits jobs into the job store and sends them to the workers.

    :param app: the Celery app whose broker the messages go to (``send_task`` by name,
        so the producer needs none of the workers' code).
    :param store: the job store, in the Redis the workers use.
    :param settings: the limits it checks (``CARDLOAD_JOBS_MAX_AMOUNT_CENTS``).
    """

    app: Celery
    store: JobStore
    settings: Settings

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, app: Celery | None = None
    ) -> CardLoadProducer:
        """A producer for ``settings`` (default: the ``CARDLOAD_*`` environment) and
        ``app`` (default: cardload's own app for those settings)."""
        if app is None:
            app = default_app() if settings is None else create_app(settings)
        settings = settings or load_settings()
        client = connect(settings.redis_url)
        return cls(app, job_store(client, settings), settings)

    def check(self, job: CardLoadJob) -> None:
        limit = self.settings.jobs.max_amount_cents
        if job.amount_cents > limit:
            raise AmountLimitError(
                f"amount {job.amount_cents} cents exceeds the maximum of {limit} cents"
            )
        if job.payment_method is not None and job.payment_method not in LOAD_METHODS:
            raise PaymentMethodError(
                f"payment_method {job.payment_method!r}: a card load is paid with one of "
                f"{', '.join(sorted(LOAD_METHODS))}"
            )

    def enqueue(self, job: CardLoadJob) -> str:
        """The job id; the first job's id if the key was used before (same content)."""
        result = self.enqueue_many([job])[0]
        if isinstance(result, IdempotencyConflict):
            raise result
        return result.job_id

    def enqueue_many(
        self, jobs: Sequence[CardLoadJob], *, confirm: bool = True
    ) -> list[Admission | IdempotencyConflict]:
        """Admit and send many jobs with pipelined round trips; one result per job.
        ``confirm=False`` leaves the replicas' confirmation to the caller (``confirm``),
        who sends more first (a batch file confirms once, at its end).

        :raises JobStoreUnavailable: Redis could not be reached (some jobs may be in).
        :raises BrokerUnavailable: jobs were admitted and not sent.
        :raises NotReplicated: jobs were admitted and sent, not confirmed on the replicas
            ``CARDLOAD_JOBS_REPLICAS_ACK`` asks for.
        Either way, enqueueing the same jobs again (same keys) finishes the work."""
        for job in jobs:
            self.check(job)
        try:
            results = self.store.admit_many(jobs)
            admitted = [r for r in results if isinstance(r, Admission)]
            sent_before = self.store.dispatched_many([r.job_id for r in admitted if not r.created])
        except redis.RedisError as exc:
            raise _unreachable(exc) from exc
        by_id = {job.job_id: job for job in jobs}
        # New jobs, and known ones whose message may never have left (a crashed producer).
        to_send = [r.job_id for r in admitted if r.created or not sent_before.get(r.job_id)]
        if to_send:
            items = [Dispatch("create", jid, _label(by_id.get(jid))) for jid in to_send]
            try:
                send_steps(self.app, items, self.settings.jobs.queue)
                self.store.mark_dispatched(to_send)
            # BatchPublishError: a pipelined batch failed part way; some messages may be out.
            except (OperationalError, BatchPublishError, redis.RedisError) as exc:
                raise BrokerUnavailable(
                    f"{len(to_send)} job(s) admitted but maybe not sent "
                    f"({type(exc).__name__}): enqueue again with the same keys, or the "
                    "stall sweep sends them"
                ) from exc
        if confirm and admitted:
            self.confirm(
                [
                    job.idempotency_key
                    for job, result in zip(jobs, results, strict=True)
                    if isinstance(result, Admission)
                ],
                results,
            )
        return results

    def confirm(
        self,
        idempotency_keys: Sequence[str],
        results: Sequence[Admission | IdempotencyConflict] = (),
    ) -> None:
        """With ``CARDLOAD_JOBS_REPLICAS_ACK``: the jobs of these keys, and every write
        before, are on the replicas asked for, or ``NotReplicated`` says they are not
        (send the same keys again). Without it, nothing."""
        wanted = self.settings.jobs.replicas_ack
        if not wanted or not idempotency_keys:
            return
        timeout_s = self.settings.jobs.replicas_ack_timeout_s
        try:
            held, acked = self.store.replicated(idempotency_keys, wanted, timeout_s)
        except redis.RedisError as exc:
            raise _unreachable(exc) from exc
        jobs = f"{len(idempotency_keys)} job(s) accepted and sent"
        if held < len(idempotency_keys):
            raise NotReplicated(
                f"{jobs}, but the Redis answering now holds {held} of them (a failover "
                "since?): enqueue again with the same keys",
                results,
            )
        if acked < wanted:
            raise NotReplicated(
                f"{jobs}, but {acked} of {wanted} replica(s) confirmed them within "
                f"{timeout_s:g} s (CARDLOAD_JOBS_REPLICAS_ACK): a failover could lose them; "
                "enqueue again with the same keys",
                results,
            )


def _unreachable(exc: redis.RedisError) -> JobStoreUnavailable:
    return JobStoreUnavailable(
        f"the job store cannot be reached ({type(exc).__name__}): enqueue again with the same keys"
    )


def _label(job: CardLoadJob | None) -> str:
    if job is None:
        return ""
    card = mask_card_number(job.card_number) if job.card_number else job.card_group_id
    return f"card={card}, amount_cents={job.amount_cents}"


@functools.cache
def default_producer() -> CardLoadProducer:
    return CardLoadProducer.from_settings()


def enqueue_card_load(
    *,
    idempotency_key: str,
    amount_cents: int,
    card_number: str | None = None,
    card_group_id: str | None = None,
    currency: str = "EUR",
    description: str | None = None,
    extra_lines: Sequence[ExtraLine | dict[str, Any]] = (),
    customer_id: str | None = None,
    customer_contact: Contact | dict[str, Any] | None = None,
    template_id: str | None = None,
    payment_method: LoadMethod | None = None,
    source: JobSource | dict[str, Any] | None = None,
    producer: CardLoadProducer | None = None,
) -> str:
    """Enqueue one card load for an upstream system; returns the job id.

    :param idempotency_key: names this load for good (an order id, a payroll line; up
        to 255 characters). Calling again with the same key, after a timeout or a
        crash, returns the first job's id instead of loading the card twice; the same
        key with other content raises :class:`IdempotencyConflict`. Required: a key
        made up here would be new on every call, so a retry would load twice.
    :param amount_cents: what to load, in integer cents (``2000`` = 20,00 EUR); above
        ``CARDLOAD_JOBS_MAX_AMOUNT_CENTS`` raises :class:`AmountLimitError`.
    :param card_number: the card to load, 16 digits; or
    :param card_group_id: a card group (``CRG_...``) to issue a new card from and load.
    :param currency: ``EUR`` (the only one the API takes for loads).
    :param description: the load line's text (default ``Kartenaufladung 20 EUR``).
    :param extra_lines: more basket lines bought with the load (the seed's mixed basket).
    :param customer_id: an existing customer (``PCU_...``); or
    :param customer_contact: a customer made on the fly from a contact.
    :param template_id: an e-mail template (``ETP_...``) to notify the customer with.
    :param payment_method: how the load is paid (``/start/{method}``); default
        ``CARDLOAD_SECUCONNECT_START_METHOD`` (``cash``). README, "Choices", says which;
        another raises :class:`PaymentMethodError`.
    :param source: where the job came from (``order_id``, ``system``, ...), carried into
        its result event.
    :param producer: the producer to use; default: one for the ``CARDLOAD_*``
        environment, made on the first call.
    :raises pydantic.ValidationError: a field is invalid (the message never repeats
        its value).
    """
    producer = producer or default_producer()
    job = CardLoadJob.model_validate(
        {
            "idempotency_key": idempotency_key,
            "card_number": card_number,
            "card_group_id": card_group_id,
            "amount_cents": amount_cents,
            "currency": currency,
            "description": description,
            "extra_lines": tuple(extra_lines),
            "customer_id": customer_id,
            "customer_contact": customer_contact,
            "template_id": template_id,
            "payment_method": payment_method,
            "source": source or JobSource(),
        }
    )
    return producer.enqueue(job)
