"""What the HTTP API takes and answers: the job's fields under the Python API's names,
amounts in integer cents, card numbers masked in every answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cardload.events.model import EventBalances, EventReceipt
from cardload.jobs.model import (
    CardGroupId,
    CardNumber,
    ErrorInfo,
    ExtraLine,
    JobSource,
    StrictCents,
)
from cardload.secuconnect.models import Contact


class CardLoadRequest(BaseModel):
    """One card load, as ``enqueue_card_load`` takes it; the idempotency key comes in
    the ``Idempotency-Key`` header."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    card_number: CardNumber | None = Field(None, description="16 digits; or card_group_id")
    card_group_id: CardGroupId | None = Field(
        None, description="a card group (CRG_...) to issue a new card from and load"
    )
    amount_cents: StrictCents = Field(description="integer cents: 2000 is 20,00 EUR")
    currency: str = Field("EUR", description="EUR, the only currency loads take")
    description: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    extra_lines: list[ExtraLine] = Field(
        default_factory=list, description="more basket lines bought with the load"
    )
    customer_id: str | None = Field(None, description="an existing customer (PCU_...)")
    customer_contact: Contact | None = Field(None, description="a customer made on the fly")
    template_id: str | None = Field(None, description="an e-mail template (ETP_...)")
    payment_method: str | None = Field(
        None, description="how the load is paid (default: the worker's start method)"
    )
    order_id: Annotated[str, Field(min_length=1, max_length=255)] | None = Field(
        None, description="the order this load belongs to, carried into the result event"
    )

    @model_validator(mode="after")
    def _one_card(self) -> CardLoadRequest:
        if (self.card_number is None) == (self.card_group_id is None):
            raise ValueError("exactly one of card_number and card_group_id is required")
        return self


class Accepted(BaseModel):
    job_id: str
    status: str


class CardLoadView(BaseModel):
    """A job as the API shows it: its state, and when it succeeded its transaction,
    receipt and the card's new balances."""

    job_id: str
    status: str = Field(description="queued, creating, created, starting, succeeded, dead_lettered")
    idempotency_key: str
    card_number: str | None = Field(description="masked: 927600******4352")
    card_group_id: str | None
    amount_cents: int
    currency: str
    attempts: dict[str, int] = Field(description="attempts per step: create, start")
    transaction_id: str | None
    receipt: EventReceipt | None = Field(description="when succeeded; card numbers masked")
    balances: EventBalances | None = Field(
        description="when succeeded and the API's answer carried them"
    )
    error: ErrorInfo | None = Field(description="when dead-lettered, or the last failure")
    load_uncertain: bool
    source: JobSource
    enqueued_at: datetime
    updated_at: datetime


class RowProblem(BaseModel):
    row: int = Field(description="1 is the first data row")
    field: str
    reason: str


class BatchAccepted(BaseModel):
    batch_id: str
    read_as: str = Field(description="the file's dialect and encoding, as read")
    rows: int
    enqueued: int
    already_enqueued: int
    invalid: list[RowProblem] = Field(description="rows not enqueued, with field and reason")


class BatchView(BaseModel):
    batch_id: str
    file: str
    rows: int
    invalid: int
    by_status: dict[str, int]
    finished: bool


class DeadLetterView(BaseModel):
    job_id: str
    idempotency_key: str
    card_number: str | None = Field(description="masked")
    amount_cents: int
    currency: str
    error: ErrorInfo
    transaction_id: str | None
    attempts: dict[str, int]
    generation: int
    load_uncertain: bool
    dead_lettered_at: datetime


class DeadLetterPage(BaseModel):
    total: int
    items: list[DeadLetterView]


class Replayed(BaseModel):
    job_id: str
    status: str


class Health(BaseModel):
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)
