"""``GET /v1/dead-letters`` and ``POST /v1/dead-letters/{job_id}/replay``: for
operators (scope ``operate``)."""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import APIRouter, Depends, Query
from kombu.exceptions import BatchPublishError, OperationalError

from cardload.api.auth import require
from cardload.api.problems import Problem, documented
from cardload.api.schemas import DeadLetterPage, DeadLetterView, Replayed
from cardload.api.services import Services, services
from cardload.apikeys import ApiKey
from cardload.deadletters.store import DeadLetter
from cardload.observability.masking import mask_card_number
from cardload.producers.replay import replay_dead_letters

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])


def _view(letter: DeadLetter) -> DeadLetterView:
    job = letter.job
    return DeadLetterView(
        job_id=job.job_id,
        idempotency_key=job.idempotency_key,
        card_number=mask_card_number(job.card_number) if job.card_number else None,
        amount_cents=job.amount_cents,
        currency=job.currency,
        error=letter.error,
        transaction_id=letter.transaction_id,
        attempts=letter.attempts,
        generation=letter.generation,
        load_uncertain=letter.load_uncertain,
        dead_lettered_at=letter.dead_lettered_at,
    )


@router.get(
    "",
    response_model=DeadLetterPage,
    responses=documented(401, 403),
    summary="Dead letters, oldest first",
)
def list_dead_letters(
    _: Annotated[ApiKey, Depends(require("operate"))],
    found: Annotated[Services, Depends(services)],
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeadLetterPage:
    letters = found.dead_letters.entries(offset, limit)
    return DeadLetterPage(total=found.dead_letters.count(), items=[_view(x) for x in letters])


@router.post(
    "/{job_id}/replay",
    response_model=Replayed,
    status_code=202,
    responses=documented(401, 403, 404, 503),
    summary="Queue a dead letter again (it reads its transaction before anything else)",
)
def replay_dead_letter(
    job_id: str,
    _: Annotated[ApiKey, Depends(require("operate"))],
    found: Annotated[Services, Depends(services)],
) -> Replayed:
    try:
        replayed = len(job_id) <= 64 and replay_dead_letters(found.producer, [job_id])
    except (redis.RedisError, OperationalError, BatchPublishError):
        # Reopened or not: a repeat answers 404 if it was, and the stall sweep sends it.
        raise Problem(
            503,
            "unavailable",
            "Service unavailable",
            "Redis or the broker did not answer: repeat the replay; if it answers 404 the "
            "job was queued again and the stall sweep sends it",
            headers={"Retry-After": "5"},
        ) from None
    if not replayed:
        raise Problem(404, "not-found", "Not found", "no dead letter with this id")
    return Replayed(job_id=job_id, status="queued")
