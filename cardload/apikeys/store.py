"""API keys in Redis, each kept as the SHA-256 of its secret, never the key itself.

A key reads ``clk_<id>_<secret>``: the id (public, 12 hex digits) finds the record in
one read, the secret (32 random bytes) is compared by its hash in constant time. A
plain hash suffices: the secret is random, not a password, so there is nothing to
guess from the hash that a slow hash would protect.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import redis
from pydantic import BaseModel, ConfigDict, Field

from cardload.errors import CardloadError
from cardload.jobs import keys
from cardload.jobs.model import now_utc
from cardload.jobs.replies import text

Scope = Literal["submit", "read", "operate"]
SCOPES: tuple[Scope, ...] = ("submit", "read", "operate")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_KEY = re.compile(r"^clk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NO_HASH = hashlib.sha256(b"no such key").hexdigest()  # compared when the id is unknown


class NameTaken(CardloadError, ValueError):
    """An API key of that name exists: revoke it first, or choose another name."""


class ApiKey(BaseModel):
    """What is stored of a key: never the key, only the hash of its secret."""

    model_config = ConfigDict(frozen=True)

    name: str
    key_id: str
    scopes: tuple[Scope, ...]
    secret_sha256: str = Field(repr=False)
    created_at: datetime

    def view(self) -> dict[str, Any]:
        """For listings: name, id, scopes and age; nothing of the secret."""
        return {
            "name": self.name,
            "key_id": self.key_id,
            "scopes": list(self.scopes),
            "created_at": self.created_at.isoformat(timespec="seconds"),
        }


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeyStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def create(self, name: str, scopes: Sequence[str]) -> tuple[ApiKey, str]:
        """A new key named ``name``: its record and the key itself, which is not kept
        anywhere (print it once).

        :raises ValueError: the name or a scope is invalid.
        :raises NameTaken: a key of that name exists."""
        if not NAME.match(name):
            raise ValueError(
                f"name {name!r}: 1 to 64 letters, digits, '.', '_', ':' or '-', "
                "starting with a letter or digit"
            )
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise ValueError(
                f"scopes: {', '.join(unknown) or 'none given'}; choose from {', '.join(SCOPES)}"
            )
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        record = ApiKey(
            name=name,
            key_id=key_id,
            scopes=tuple(s for s in SCOPES if s in scopes),
            secret_sha256=_digest(secret),
            created_at=now_utc(),
        )
        if not self.redis.hsetnx(keys.API_KEY_NAMES, name, key_id):
            raise NameTaken(f"an API key named {name!r} exists: revoke it first")
        self.redis.hset(keys.API_KEYS, key_id, record.model_dump_json())
        return record, f"clk_{key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        raws: Any = self.redis.hvals(keys.API_KEYS)
        return sorted((ApiKey.model_validate_json(r) for r in raws), key=lambda k: k.name)

    def revoke(self, name: str) -> bool:
        """Revoke the key named ``name``; False if there is none."""
        key_id = self.redis.hget(keys.API_KEY_NAMES, name)
        if key_id is None:
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(keys.API_KEYS, text(key_id))
        pipe.hdel(keys.API_KEY_NAMES, name)
        pipe.execute()
        return True

    def authenticate(self, presented: str) -> ApiKey | None:
        """The key's record if ``presented`` is a valid key, else None. The secret's
        hash is compared in constant time, and compared at all for unknown ids."""
        match = _KEY.match(presented)
        raw = self.redis.hget(keys.API_KEYS, match.group(1)) if match else None
        record = ApiKey.model_validate_json(raw) if raw else None
        expected = record.secret_sha256 if record else _NO_HASH
        given = _digest(match.group(2)) if match else _digest(presented)
        if not hmac.compare_digest(expected, given) or record is None:
            return None
        return record
