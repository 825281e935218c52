"""A card-load job and its state record: the contract between producers and workers."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cardload.secuconnect.models import Contact

CardNumber = Annotated[str, Field(pattern=r"^[0-9]{16}$")]
CardGroupId = Annotated[str, Field(pattern=r"^CRG_[A-Z0-9]{30}$")]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=255)]
StrictCents = Annotated[int, Field(strict=True, gt=0)]


def now_utc() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


# Job ids are ours (random hex), so logs may show them unmasked.
JobId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


def default_description(amount_cents: int, currency: str) -> str:
    """Like the seed's "Kartenaufladung 20 EUR"; cents only when there are any."""
    major, minor = divmod(amount_cents, 100)
    amount = f"{major}" if minor == 0 else f"{major},{minor:02d}"
    return f"Kartenaufladung {amount} {currency}"


class JobSource(BaseModel):
    """Where a job came from, carried into its result event."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    batch_id: str | None = None
    row: int | None = None
    order_id: str | None = None
    system: str | None = None


class ExtraLine(BaseModel):
    """A basket line besides the load (the seed's mixed basket)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    desc: Annotated[str, Field(min_length=1)]
    quantity: Annotated[int, Field(strict=True, ge=1)] = 1
    price_one_cents: StrictCents
    tax: Annotated[int, Field(strict=True, ge=0, le=100)] = 19
    ean: str | None = None
    article_number: str | None = None


class CardLoadJob(BaseModel):
    """One card load. ``merchantRef`` on the Smart Transaction is the idempotency key,
    which is how a transaction whose create response was lost is found again."""

    # A validation error must not echo its input: it may be a card number.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    job_id: JobId = Field(default_factory=new_job_id)
    idempotency_key: IdempotencyKey
    card_number: CardNumber | None = None
    card_group_id: CardGroupId | None = None
    amount_cents: StrictCents
    currency: Literal["EUR"] = "EUR"
    description: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    extra_lines: tuple[ExtraLine, ...] = ()
    customer_id: Annotated[str, Field(pattern=r"^PCU_[A-Z0-9]{30}$")] | None = None
    customer_contact: Contact | None = None
    template_id: Annotated[str, Field(pattern=r"^ETP_[A-Z0-9]{30}$")] | None = None
    # None: CARDLOAD_SECUCONNECT_START_METHOD. A str, not LoadMethod: producers check it
    # on admission, and a record 0.2 wrote may hold any string (it must still load).
    payment_method: str | None = None
    source: JobSource = JobSource()
    created_at: datetime = Field(default_factory=now_utc)

    @model_validator(mode="after")
    def _one_card(self) -> CardLoadJob:
        if (self.card_number is None) == (self.card_group_id is None):
            raise ValueError("exactly one of card_number and card_group_id is required")
        if self.customer_id and self.customer_contact:
            raise ValueError("customer_id and customer_contact exclude each other")
        return self

    @property
    def article_description(self) -> str:
        return self.description or default_description(self.amount_cents, self.currency)

    @property
    def total_cents(self) -> int:
        return self.amount_cents + sum(x.quantity * x.price_one_cents for x in self.extra_lines)

    def fingerprint(self) -> str:
        """What the job asks for, without its identity: same key + other content = error."""
        content = self.model_dump(mode="json", exclude={"job_id", "created_at", "source"})
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


class JobStatus(StrEnum):
    QUEUED = "queued"
    CREATING = "creating"
    CREATED = "created"
    STARTING = "starting"
    SUCCEEDED = "succeeded"
    DEAD_LETTERED = "dead_lettered"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.DEAD_LETTERED)


# The error kind of a payment that failed: nothing was loaded, and a replay makes a new
# transaction (the failed one cannot be paid again).
PAYMENT_FAILED = "payment_failed"


class ErrorInfo(BaseModel):
    """A failure as recorded in history, dead letters and events (never a token)."""

    model_config = ConfigDict(frozen=True)

    kind: str
    message: str
    http_status: int | None = None
    api_error: str | None = None
    api_error_details: str | None = None
    support_id: str | None = None


class HistoryEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: datetime = Field(default_factory=now_utc)
    status: JobStatus
    step: str | None = None
    attempt: int | None = None
    note: str | None = None
    transaction_id: str | None = None
    error: ErrorInfo | None = None


class LoadResult(BaseModel):
    """What a succeeded job produced: the transaction, its receipt and the new balances
    (None where the API's answer carried none: the card was loaded all the same)."""

    model_config = ConfigDict(frozen=True)

    transaction_id: str
    status: str
    cash_cents: int | None
    bonus_cents: int | None
    total_cents: int | None
    receipt: list[dict[str, Any]]
    card_number: str | None = None


class JobRecord(BaseModel):
    """The state record of one job, as kept in Redis (:mod:`jobs.store` writes it)."""

    job: CardLoadJob
    status: JobStatus
    transaction_id: str | None = None
    attempts: dict[str, int] = Field(default_factory=dict)
    generation: int = 0
    reconcile: bool = Field(
        False, description="read the API before acting: the record may not show all it did"
    )
    load_uncertain: bool = Field(
        False, description="a start may have been sent and not read back since"
    )
    dispatched: bool = False
    pending_since_ms: int | None = Field(
        None, description="when its payment was first seen still in flight (Redis's clock)"
    )
    enqueued_at: datetime
    updated_at: datetime
    result: LoadResult | None = None
    error: ErrorInfo | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    events: list[str] = Field(default_factory=list, description="ids of result events appended")

    @property
    def total_attempts(self) -> int:
        return sum(self.attempts.values())

    @property
    def done(self) -> bool:
        """Finished and announced (the result event is written with the final status;
        a job that succeeded under cardload 0.1 may still wait for its publish step)."""
        if self.status is JobStatus.SUCCEEDED:
            return f"{self.job.job_id}:succeeded" in self.events
        return self.status is JobStatus.DEAD_LETTERED
