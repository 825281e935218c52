"""Result events: models, the Redis stream, and their JSON Schema."""

from cardload.events.model import (
    RESULT_EVENT,
    SCHEMA_VERSION,
    CardLoadFailed,
    CardLoadSucceeded,
    EventBalances,
    EventReceipt,
    failed_event_id,
    succeeded_event_id,
)
from cardload.events.stream import EventStream, StreamEntry

__all__ = [
    "RESULT_EVENT",
    "SCHEMA_VERSION",
    "CardLoadFailed",
    "CardLoadSucceeded",
    "EventBalances",
    "EventReceipt",
    "EventStream",
    "StreamEntry",
    "failed_event_id",
    "succeeded_event_id",
]
