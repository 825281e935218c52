"""Producers: put card-load jobs in front of the workers (Python API and batch files)."""

from producers.amounts import AmountError, parse_amount
from producers.enqueue import CardLoadProducer, enqueue_card_load

__all__ = ["AmountError", "CardLoadProducer", "enqueue_card_load", "parse_amount"]
