"""Result events: what consumers of the stream receive, one per finished job.

``event_id`` is stable (the same job always yields the same id per outcome), so a
consumer that sees an event twice can drop the second. Bump ``SCHEMA_VERSION`` on
any incompatible change and regenerate ``events/schema.json``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from cardload.jobs.model import ErrorInfo, JobSource, LoadResult
from cardload.secuconnect.models import SmartTransaction
from cardload.secuconnect.receipt import render_receipt

SCHEMA_VERSION = 1


class EventBalances(BaseModel):
    model_config = ConfigDict(frozen=True)

    cash_cents: int
    bonus_cents: int
    total_cents: int


class EventReceipt(BaseModel):
    model_config = ConfigDict(frozen=True)

    lines: list[dict[str, Any]] = Field(description="receipt lines as the API returned them")
    text: str = Field(description="plain-text rendering of the lines")


def balances_of(result: LoadResult) -> EventBalances | None:
    """The new balances a load left, or None where the API's answer carried none."""
    if result.cash_cents is None or result.bonus_cents is None or result.total_cents is None:
        return None
    return EventBalances(
        cash_cents=result.cash_cents, bonus_cents=result.bonus_cents, total_cents=result.total_cents
    )


def receipt_of(result: LoadResult, lines: list[dict[str, Any]]) -> EventReceipt:
    """The receipt of ``result`` as ``lines`` (masked or not, as the caller chose) and
    their plain-text rendering."""
    parsed = SmartTransaction.model_validate(
        {"id": result.transaction_id, "status": result.status, "receipt": lines}
    )
    return EventReceipt(lines=lines, text=render_receipt(parsed.receipt))


class _EventBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    schema_version: Literal[1] = 1  # SCHEMA_VERSION
    occurred_at: datetime
    job_id: str
    idempotency_key: str
    source: JobSource
    card_number: str | None = Field(description="masked (927600******4352) unless configured")
    amount_cents: int
    currency: str
    attempts: dict[str, int] = Field(description="attempts per step: create, start")
    enqueued_at: datetime


class CardLoadSucceeded(_EventBase):
    type: Literal["card_load.succeeded"] = "card_load.succeeded"
    transaction_id: str
    status: str = Field(description="the Smart Transaction's status, normally 'ok'")
    balances: EventBalances | None = Field(
        description="the card's new balances; null when the API's answer carried none "
        "(the card was loaded all the same)"
    )
    receipt: EventReceipt
    finished_at: datetime


class CardLoadFailed(_EventBase):
    type: Literal["card_load.failed"] = "card_load.failed"
    transaction_id: str | None = None
    error: ErrorInfo
    generation: int = Field(0, description="how often the job was replayed before this failure")
    load_uncertain: bool = Field(
        False,
        description="a start was sent and never confirmed either way: the card may have been "
        "loaded; replaying the dead letter reads the transaction and settles it",
    )
    failed_at: datetime


ResultEvent = Annotated[CardLoadSucceeded | CardLoadFailed, Field(discriminator="type")]
RESULT_EVENT: TypeAdapter[CardLoadSucceeded | CardLoadFailed] = TypeAdapter(ResultEvent)


def succeeded_event_id(job_id: str) -> str:
    return f"{job_id}:succeeded"


def failed_event_id(job_id: str, generation: int) -> str:
    return f"{job_id}:failed:{generation}"
