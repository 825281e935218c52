"""Deliveries that failed for ``CARDLOAD_WEBHOOKS_RETRY_FOR_S``: listed per endpoint,
and sent again on request (from their first try: a new day of retries)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from cardload.jobs import keys
from cardload.jobs.replies import text


@dataclass(frozen=True)
class DeadDelivery:
    delivery_id: str
    endpoint: str
    event_id: str
    type: str
    attempts: int
    last_error: str
    dead_at_ms: int

    def view(self) -> dict[str, Any]:
        return self.__dict__.copy()


class DeadDeliveries:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def entries(self, endpoint: str | None = None) -> list[DeadDelivery]:
        found: Any = self.redis.zrange(keys.WEBHOOK_DEAD, 0, -1, withscores=True)
        out = []
        for raw_id, score in found:
            did = text(raw_id)
            state = {
                text(k): text(v) for k, v in self.redis.hgetall(keys.webhook_delivery(did)).items()
            }
            if not state or (endpoint and state.get("endpoint") != endpoint):
                continue
            out.append(
                DeadDelivery(
                    did,
                    state["endpoint"],
                    state["event_id"],
                    state.get("type", ""),
                    int(state.get("attempts", 0)),
                    state.get("last_error", ""),
                    int(score),
                )
            )
        return out

    def replay(self, delivery_ids: Sequence[str]) -> int:
        """Due now again, with a new period of retries; returns how many (ids that are
        not dead deliveries are skipped)."""
        now_ms = int(time.time() * 1000)
        replay = self.redis.register_script(_REPLAY)
        return sum(
            int(
                replay(
                    keys=[keys.WEBHOOK_DEAD, keys.WEBHOOK_DUE, keys.webhook_delivery(did)],
                    args=[did, now_ms],
                )
            )
            for did in delivery_ids
        )


# KEYS: dead, due, the delivery's state. ARGV: delivery id, now (ms).
_REPLAY = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[3], 'first_at', ARGV[2], 'attempts', 0)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""
