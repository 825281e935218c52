"""The result-event stream in Redis, read with plain XREAD or consumer groups.

Events are appended by the job store, in the same script that records the outcome
(:mod:`jobs.scripts`), once per job and outcome. The same script trims the stream:
entries older than ``CARDLOAD_RETENTION_EVENTS_S`` (by their id, which is Redis's time)
and beyond ``CARDLOAD_EVENTS_STREAM_MAXLEN`` go, so a reader that falls further behind
misses them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from cardload.events.model import RESULT_EVENT, CardLoadFailed, CardLoadSucceeded
from cardload.jobs.replies import text

Event = CardLoadSucceeded | CardLoadFailed


@dataclass(frozen=True)
class StreamEntry:
    stream_id: str
    event: Event


class EventStream:
    def __init__(self, client: redis.Redis, name: str) -> None:
        self.redis = client
        self.name = name

    def read(
        self, after: str = "0-0", count: int = 100, block_ms: int | None = None
    ) -> list[StreamEntry]:
        reply: Any = self.redis.xread({self.name: after}, count=count, block=block_ms)
        return [entry for _, messages in reply or [] for entry in _entries(messages)]

    def tail(self, count: int = 20) -> list[StreamEntry]:
        messages: Any = self.redis.xrevrange(self.name, count=count)
        return list(reversed(list(_entries(messages))))

    def ensure_group(self, group: str, start: str = "0") -> None:
        try:
            self.redis.xgroup_create(self.name, group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read_group(
        self, group: str, consumer: str, count: int = 100, block_ms: int | None = None
    ) -> list[StreamEntry]:
        reply: Any = self.redis.xreadgroup(
            group, consumer, {self.name: ">"}, count=count, block=block_ms
        )
        return [entry for _, messages in reply or [] for entry in _entries(messages)]

    def ack(self, group: str, *stream_ids: str) -> None:
        self.redis.xack(self.name, group, *stream_ids)


def _entries(messages: Any) -> Iterator[StreamEntry]:
    for stream_id, fields in messages:
        data = fields.get(b"data") or fields.get("data")
        yield StreamEntry(text(stream_id), RESULT_EVENT.validate_json(data))
