"""cardload: load (top up) secucard loyalty and gift cards through secuconnect Smart
Transactions, as Celery jobs that load each card exactly once.

What an order system needs to enqueue card loads from its own process::

    from cardload import enqueue_card_load

    job_id = enqueue_card_load(
        idempotency_key="order-4711", card_number="9276004424644352", amount_cents=2000
    )

Importing cardload changes nothing in the host: no Celery app is made or made
current, no signal is connected, no logging is configured. The app is made on first
use (``cardload.worker.default_app``), configured from ``CARDLOAD_*`` variables.
"""

from __future__ import annotations

from cardload._version import __version__
from cardload.config import LoadMethod, Settings, SettingsError, load_settings
from cardload.deadletters import DeadLetter, DeadLetterStore
from cardload.errors import CardloadError
from cardload.events import CardLoadFailed, CardLoadSucceeded, EventStream
from cardload.jobs import (
    CardLoadJob,
    ExtraLine,
    IdempotencyConflict,
    JobRecord,
    JobSource,
    JobStatus,
    JobStore,
    job_store,
)
from cardload.producers import (
    AmountError,
    AmountLimitError,
    BrokerUnavailable,
    CardLoadProducer,
    JobStoreUnavailable,
    NotReplicated,
    PaymentMethodError,
    enqueue_card_load,
    parse_amount,
    replay_dead_letter,
    replay_dead_letters,
)

__all__ = [
    "AmountError",
    "AmountLimitError",
    "BrokerUnavailable",
    "CardLoadFailed",
    "CardLoadJob",
    "CardLoadProducer",
    "CardLoadSucceeded",
    "CardloadError",
    "DeadLetter",
    "DeadLetterStore",
    "EventStream",
    "ExtraLine",
    "IdempotencyConflict",
    "JobRecord",
    "JobSource",
    "JobStatus",
    "JobStore",
    "JobStoreUnavailable",
    "LoadMethod",
    "NotReplicated",
    "PaymentMethodError",
    "Settings",
    "SettingsError",
    "__version__",
    "enqueue_card_load",
    "job_store",
    "load_settings",
    "parse_amount",
    "replay_dead_letter",
    "replay_dead_letters",
]
