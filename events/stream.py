"""The result-event stream in Redis: published once per job and outcome, read with
plain XREAD or consumer groups."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from events.model import RESULT_EVENT, CardLoadFailed, CardLoadSucceeded
from jobs import keys
from jobs.replies import text

# KEYS: job hash, stream.  ARGV: flag field, event id, event type, data, maxlen
# The flag on the job makes publishing idempotent: a redelivered task adds nothing.
PUBLISH_ONCE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return false end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
  'event_id', ARGV[2], 'type', ARGV[3], 'data', ARGV[4])
"""

Event = CardLoadSucceeded | CardLoadFailed


def flag_field(event: Event) -> str:
    return f"event:{event.event_id}"


@dataclass(frozen=True)
class StreamEntry:
    stream_id: str
    event: Event


class EventStream:
    def __init__(self, client: redis.Redis, name: str, maxlen: int = 1_000_000) -> None:
        self.redis = client
        self.name = name
        self.maxlen = maxlen
        self._publish = client.register_script(PUBLISH_ONCE)

    def publish_args(self, event: Event) -> tuple[list[str], list[str | int]]:
        """Keys and args of :data:`PUBLISH_ONCE`, for scripts that publish atomically."""
        return (
            [keys.job(event.job_id), self.name],
            [flag_field(event), event.event_id, event.type, event.model_dump_json(), self.maxlen],
        )

    def publish(self, event: Event) -> str | None:
        """Append the event unless it was published before; its stream id, or None."""
        script_keys, args = self.publish_args(event)
        stream_id = self._publish(keys=script_keys, args=args)
        return text(stream_id) if stream_id else None

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
