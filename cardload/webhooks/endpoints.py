"""Webhook endpoints: a URL, the event types it takes, and the secret its deliveries
are signed with. The secret is kept (deliveries are signed with it) and shown once."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import redis
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from cardload.jobs import keys
from cardload.jobs.model import now_utc
from cardload.jobs.replies import text

EventType = Literal["card_load.succeeded", "card_load.failed"]
EVENT_TYPES: tuple[EventType, ...] = ("card_load.succeeded", "card_load.failed")


class Endpoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    url: str
    events: tuple[EventType, ...]
    secret: SecretStr = Field(repr=False)
    created_at: datetime

    def view(self) -> dict[str, Any]:
        """For listings: everything but the secret."""
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "created_at": self.created_at.isoformat(timespec="seconds"),
        }

    def stored(self) -> str:
        """As kept in Redis: with the secret (deliveries are signed with it)."""
        data = self.model_dump(mode="json") | {"secret": self.secret.get_secret_value()}
        return json.dumps(data)


class EndpointStore:
    def __init__(self, client: redis.Redis, stream: str) -> None:
        self.redis = client
        self.stream = stream

    def add(self, url: str, events: Sequence[str]) -> Endpoint:
        """A new endpoint for ``events`` (the check of its address is the caller's)."""
        unknown = sorted(set(events) - set(EVENT_TYPES))
        if unknown or not events:
            raise ValueError(
                f"events: {', '.join(unknown) or 'none given'}; choose from "
                f"{', '.join(EVENT_TYPES)}"
            )
        endpoint = Endpoint(
            id=f"we_{secrets.token_hex(8)}",
            url=url,
            events=tuple(e for e in EVENT_TYPES if e in events),
            secret=SecretStr(f"whsec_{secrets.token_urlsafe(32)}"),
            created_at=now_utc(),
        )
        if not self.redis.hlen(keys.WEBHOOK_ENDPOINTS):
            # The first endpoint takes the events written from now on, not the stream's
            # past (nor what piled up while there was no endpoint).
            try:
                self.redis.xgroup_create(self.stream, keys.WEBHOOK_GROUP, id="$", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
                self.redis.xgroup_setid(self.stream, keys.WEBHOOK_GROUP, id="$")
        self.redis.hset(keys.WEBHOOK_ENDPOINTS, endpoint.id, endpoint.stored())
        return endpoint

    def all(self) -> list[Endpoint]:
        raws: Any = self.redis.hvals(keys.WEBHOOK_ENDPOINTS)
        return sorted((Endpoint.model_validate_json(r) for r in raws), key=lambda e: e.created_at)

    def get(self, endpoint_id: str) -> Endpoint | None:
        raw = self.redis.hget(keys.WEBHOOK_ENDPOINTS, endpoint_id)
        return Endpoint.model_validate_json(raw) if raw else None

    def remove(self, endpoint_id: str) -> bool:
        """Stop delivering to it, and forget its deliveries (due and dead). One a
        worker has under way still ends, and is not tried again."""
        if not self.redis.hdel(keys.WEBHOOK_ENDPOINTS, endpoint_id):
            return False
        for index in (keys.WEBHOOK_DUE, keys.WEBHOOK_DEAD):
            mine = [
                text(member) for member, _ in self.redis.zscan_iter(index, match=f"{endpoint_id}|*")
            ]
            for start in range(0, len(mine), 500):
                chunk = mine[start : start + 500]
                pipe = self.redis.pipeline(transaction=False)
                pipe.zrem(index, *chunk)
                pipe.delete(*(keys.webhook_delivery(did) for did in chunk))
                pipe.execute()
        return True
