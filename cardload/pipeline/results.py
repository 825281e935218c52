"""What a finished job leaves behind: its load result and its result event."""

from __future__ import annotations

from datetime import datetime

from cardload.events.model import (
    CardLoadFailed,
    CardLoadSucceeded,
    balances_of,
    failed_event_id,
    receipt_of,
    succeeded_event_id,
)
from cardload.jobs.model import ErrorInfo, JobRecord, LoadResult
from cardload.jobs.store import Announcement
from cardload.observability.masking import mask_card_number, mask_receipt
from cardload.secuconnect.models import SmartTransaction
from cardload.secuconnect.receipt import RECEIPT_LINES


def load_result(tx: SmartTransaction) -> LoadResult:
    """The transaction's outcome; balances None if its answer carried none (the card was
    loaded: a missing balance must not keep the job from succeeding)."""
    balances = tx.balances
    return LoadResult(
        transaction_id=tx.id,
        status=tx.status,
        cash_cents=balances.cash_cents if balances else None,
        bonus_cents=balances.bonus_cents if balances else None,
        total_cents=balances.total_cents if balances else None,
        receipt=RECEIPT_LINES.dump_python(tx.receipt, mode="json", exclude_none=True),
        card_number=tx.card_number,
    )


def _card(number: str | None, mask: bool) -> str | None:
    return mask_card_number(number) if number and mask else number


def succeeded_event(
    record: JobRecord, result: LoadResult, *, mask: bool, now: datetime
) -> CardLoadSucceeded:
    # The receipt prints the card number too: masked there like everywhere else.
    lines = mask_receipt(result.receipt) if mask else result.receipt
    job = record.job
    return CardLoadSucceeded(
        event_id=succeeded_event_id(job.job_id),
        occurred_at=now,
        job_id=job.job_id,
        idempotency_key=job.idempotency_key,
        source=job.source,
        card_number=_card(result.card_number or job.card_number, mask),
        amount_cents=job.amount_cents,
        currency=job.currency,
        attempts=record.attempts,
        enqueued_at=record.enqueued_at,
        transaction_id=result.transaction_id,
        status=result.status,
        balances=balances_of(result),
        receipt=receipt_of(result, lines),
        finished_at=now,
    )


def failed_event(
    record: JobRecord, error: ErrorInfo, *, load_uncertain: bool, mask: bool, now: datetime
) -> CardLoadFailed:
    job = record.job
    return CardLoadFailed(
        event_id=failed_event_id(job.job_id, record.generation),
        occurred_at=now,
        job_id=job.job_id,
        idempotency_key=job.idempotency_key,
        source=job.source,
        card_number=_card(job.card_number, mask),
        amount_cents=job.amount_cents,
        currency=job.currency,
        attempts=record.attempts,
        enqueued_at=record.enqueued_at,
        transaction_id=record.transaction_id,
        error=error,
        generation=record.generation,
        load_uncertain=load_uncertain,
        failed_at=now,
    )


def announcement(event: CardLoadSucceeded | CardLoadFailed) -> Announcement:
    return Announcement(event.event_id, event.type, event.model_dump_json())
