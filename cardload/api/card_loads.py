"""``POST /v1/card-loads`` and ``GET /v1/card-loads/{job_id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response
from pydantic import ValidationError

from cardload.api.auth import require
from cardload.api.problems import FieldError, Problem, documented, field_errors, invalid
from cardload.api.schemas import Accepted, CardLoadRequest, CardLoadView
from cardload.api.services import Services, services
from cardload.apikeys import ApiKey
from cardload.events.model import balances_of, receipt_of
from cardload.jobs.model import CardLoadJob, JobRecord, JobSource
from cardload.jobs.store import IdempotencyConflict
from cardload.observability.masking import mask_card_number, mask_receipt
from cardload.producers.enqueue import (
    AmountLimitError,
    BrokerUnavailable,
    JobStoreUnavailable,
    PaymentMethodError,
)

router = APIRouter(prefix="/v1/card-loads", tags=["card loads"])


def unavailable(exc: Exception) -> Problem:
    """Redis or the broker did not answer: nothing is lost, the same request again
    (same key) finishes the work."""
    return Problem(
        503, "unavailable", "Service unavailable", str(exc), headers={"Retry-After": "5"}
    )


@router.post(
    "",
    status_code=202,
    response_model=Accepted,
    responses=documented(
        400,
        401,
        403,
        409,
        413,
        422,
        503,
        also={200: {"model": Accepted, "description": "the key's job, enqueued before"}},
    ),
    summary="Enqueue a card load",
)
def submit_card_load(
    body: CardLoadRequest,
    response: Response,
    key: Annotated[ApiKey, Depends(require("submit"))],
    found: Annotated[Services, Depends(services)],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="names this load for good (an order id; up to 255 characters): "
            "the same key never loads twice",
        ),
    ] = None,
) -> Accepted:
    """Enqueue one card load: **202** with the new job, **200** with the job the same
    key and body enqueued before, **409** when the key was used with another body."""
    if not idempotency_key:
        raise Problem(
            400,
            "idempotency-key-missing",
            "Idempotency-Key missing",
            "send an Idempotency-Key header naming this load (an order id)",
            errors=[FieldError(field="header.Idempotency-Key", reason="required")],
        )
    fields = body.model_dump(exclude={"order_id"}, exclude_unset=True)
    fields["idempotency_key"] = idempotency_key
    fields["source"] = JobSource(order_id=body.order_id, system=f"api:{key.name}")
    try:
        job = CardLoadJob.model_validate(fields)
    except ValidationError as exc:
        errors = field_errors(exc.errors())
        for error in errors:
            if error.field == "idempotency_key":
                error.field = "header.Idempotency-Key"
        raise invalid(errors) from None
    producer = found.producer
    try:
        producer.check(job)
    except AmountLimitError as exc:
        raise invalid([FieldError(field="amount_cents", reason=str(exc))]) from None
    except PaymentMethodError as exc:
        raise invalid([FieldError(field="payment_method", reason=str(exc))]) from None
    try:
        [result] = producer.enqueue_many([job])
    except (JobStoreUnavailable, BrokerUnavailable) as exc:
        raise unavailable(exc) from None
    if isinstance(result, IdempotencyConflict):
        raise Problem(
            409,
            "idempotency-conflict",
            "Idempotency-Key used for another load",
            f"the key names job {result.job_id}, which asks for something else",
        )
    response.headers["Location"] = f"/v1/card-loads/{result.job_id}"
    if result.created:
        return Accepted(job_id=result.job_id, status="queued")
    response.status_code = 200
    record = found.store.load(result.job_id, history=False)
    return Accepted(job_id=result.job_id, status=record.status.value if record else "expired")


@router.get(
    "/{job_id}",
    response_model=CardLoadView,
    responses=documented(401, 403, 404),
    summary="A card load's state and result",
)
def get_card_load(
    job_id: str,
    _: Annotated[ApiKey, Depends(require("read"))],
    found: Annotated[Services, Depends(services)],
) -> CardLoadView:
    record = found.store.load(job_id, history=False) if len(job_id) <= 64 else None
    if record is None:
        raise Problem(404, "not-found", "Not found", "no card load with this id")
    return card_load_view(record)


def card_load_view(record: JobRecord) -> CardLoadView:
    job, result = record.job, record.result
    receipt = balances = None
    if result is not None:
        # Masked always: the receipt prints the card number.
        receipt, balances = receipt_of(result, mask_receipt(result.receipt)), balances_of(result)
    card = (result.card_number if result else None) or job.card_number
    return CardLoadView(
        job_id=job.job_id,
        status=record.status.value,
        idempotency_key=job.idempotency_key,
        card_number=mask_card_number(card) if card else None,
        card_group_id=job.card_group_id,
        amount_cents=job.amount_cents,
        currency=job.currency,
        attempts=record.attempts,
        transaction_id=record.transaction_id,
        receipt=receipt,
        balances=balances,
        error=record.error,
        load_uncertain=record.load_uncertain,
        source=job.source,
        enqueued_at=record.enqueued_at,
        updated_at=record.updated_at,
    )
