"""What each Smart Transaction status says about the card load.

The API gives ``status`` as a plain string; the statuses below are every one named in
secupay's documentation or an official SDK (README, "Choices", has the table with
sources). Only a status a source describes is taken as paid or as failed. One that
ends a transaction without a description ends the job at once as possibly loaded; one
we do not know may yet load the card, or already has, so a job waits on it and ends
uncertain.
"""

from __future__ import annotations

from enum import StrEnum


class TransactionStatus(StrEnum):
    """Statuses named by the docs or an SDK. Compare ``SmartTransaction.status`` (a
    plain string, so a new status never breaks parsing) against these members."""

    CREATED = "created"
    PROCESSING = "processing"
    APPROVED = "approved"
    PENDING = "pending"
    OK = "ok"
    RECEIVED = "received"
    SHIPPED = "shipped"
    COLLECTION = "collection"
    COLLECTED = "collected"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CANCELED = "canceled"  # the older Java and .NET SDKs spell it so
    ABORTED = "aborted"
    TIMEOUT = "timeout"
    DELETED = "deleted"


class StatusMeaning(StrEnum):
    OPEN = "open"  # created: nothing paid yet, a start may follow
    RUNNING = "running"  # the payment is under way: read again later
    PAID = "paid"  # the payment was captured: the card is loaded
    FAILED = "failed"  # the payment did not happen, or was reversed: the card is not loaded
    # The transaction ended, and no source says whether it paid first (the older SDKs
    # name these statuses and describe none): a person must look at the card.
    ENDED_UNKNOWN = "ended_unknown"


_S = TransactionStatus
MEANINGS: dict[str, StatusMeaning] = {
    _S.CREATED: StatusMeaning.OPEN,
    _S.PROCESSING: StatusMeaning.RUNNING,
    _S.APPROVED: StatusMeaning.RUNNING,
    _S.PENDING: StatusMeaning.RUNNING,
    _S.OK: StatusMeaning.PAID,
    _S.RECEIVED: StatusMeaning.PAID,
    _S.SHIPPED: StatusMeaning.PAID,
    _S.COLLECTION: StatusMeaning.PAID,
    _S.COLLECTED: StatusMeaning.PAID,
    _S.FINISHED: StatusMeaning.PAID,
    _S.FAILED: StatusMeaning.FAILED,
    _S.CANCELLED: StatusMeaning.FAILED,
    _S.CANCELED: StatusMeaning.FAILED,  # "cancelled" as the older Java and .NET SDKs spell it
    _S.ABORTED: StatusMeaning.ENDED_UNKNOWN,
    _S.TIMEOUT: StatusMeaning.ENDED_UNKNOWN,
    _S.DELETED: StatusMeaning.ENDED_UNKNOWN,
}


def meaning(status: str) -> StatusMeaning:
    """What ``status`` says about the load; an unknown status is ``RUNNING`` (wait,
    and end uncertain when the payment timeout runs out)."""
    return MEANINGS.get(status, StatusMeaning.RUNNING)


def is_paid(status: str) -> bool:
    return meaning(status) is StatusMeaning.PAID


def is_failed(status: str) -> bool:
    return meaning(status) is StatusMeaning.FAILED


def is_ended_unknown(status: str) -> bool:
    return meaning(status) is StatusMeaning.ENDED_UNKNOWN
