"""Producers: put card-load jobs in front of the workers (Python API, batch files,
dead-letter replay)."""

from cardload.producers.amounts import AmountError, parse_amount
from cardload.producers.enqueue import (
    AmountLimitError,
    BrokerUnavailable,
    CardLoadProducer,
    JobStoreUnavailable,
    NotReplicated,
    PaymentMethodError,
    enqueue_card_load,
)
from cardload.producers.replay import replay_dead_letter, replay_dead_letters

__all__ = [
    "AmountError",
    "AmountLimitError",
    "BrokerUnavailable",
    "CardLoadProducer",
    "JobStoreUnavailable",
    "NotReplicated",
    "PaymentMethodError",
    "enqueue_card_load",
    "parse_amount",
    "replay_dead_letter",
    "replay_dead_letters",
]
