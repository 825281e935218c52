"""Helpers the tests share: seed files, sandbox credentials, a seed-like request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis
from pydantic import SecretStr

from cardload.config import Settings
from cardload.events import CardLoadSucceeded
from cardload.jobs import JobRecord
from cardload.observability.masking import mask_receipt
from cardload.sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from cardload.sandbox.settings import sandbox_settings
from cardload.secuconnect import Credentials
from cardload.worker.dispatch import redis_queue_lists

SEED_DIR = Path(__file__).parent / "fixtures" / "seed"
SHARED_SEED_DIR = Path(__file__).parents[2] / "shared" / "seed"
CREDENTIALS = Credentials(DEFAULT_CLIENT_ID, SecretStr(DEFAULT_CLIENT_SECRET))


def seed(name: str) -> Any:
    return json.loads((SEED_DIR / name).read_text())


def load_request(card: str, cents: int, **extra: Any) -> dict[str, Any]:
    """A create request that loads ``cents`` onto ``card`` and buys nothing else."""
    body: dict[str, Any] = seed("01-create-request.json")
    body["idents"] = [{"type": "card", "value": card}]
    body["basket"]["products"] = [body["basket"]["products"][1] | {"id": 1, "priceOne": cents}]
    body["basket_info"]["sum"] = cents
    return body | extra


def assert_seed_result(event: CardLoadSucceeded, record: JobRecord | None) -> None:
    """The seed's acceptance case: its balances, and its receipt line for line
    (unmasked in the job record, masked in the event)."""
    balances = event.balances
    assert balances is not None
    assert (balances.cash_cents, balances.bonus_cents, balances.total_cents) == (2200, 810, 3010)
    seed_receipt = seed("03-start-response-excerpt.json")["receipt"]
    assert event.receipt.lines == mask_receipt(seed_receipt)
    assert record is not None and record.result is not None
    assert record.result.receipt == seed_receipt


def make_settings(redis_url: str, base_url: str, **sections: Any) -> Settings:
    """Settings for tests: the sandbox's, with short backoff and small timeouts."""
    defaults: dict[str, dict[str, Any]] = {
        "secuconnect": {"connect_timeout_s": 1.0, "read_timeout_s": 5.0},
        "retry": {"max_attempts": 4, "base_backoff_s": 0.05, "max_backoff_s": 0.5},
        "jobs": {
            "visibility_timeout_s": 10,
            "stall_after_s": 60,
            "lease_s": 3.0,
            "row_key_secret": "test-row-key-secret",
        },
        "events": {"stream": "test:events", "dead_letters": "test:dlq"},
        "log": {"format": "console", "level": "INFO"},
    }
    for name, section in sections.items():
        defaults[name] = {**defaults.get(name, {}), **section}
    return sandbox_settings(redis_url, base_url, **defaults)


def queued(client: redis.Redis, queue: str = "cardload") -> list[bytes]:
    """The messages waiting in ``queue`` on a Redis broker, in every one of kombu's
    priority lists (a job's create waits in a lower priority than its start)."""
    messages: list[bytes] = []
    for name in redis_queue_lists(queue):
        got: Any = client.lrange(name, 0, -1)
        messages += got
    return messages
