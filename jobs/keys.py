"""Every Redis key cardload writes, in one place."""

from __future__ import annotations

PREFIX = "cardload"


def job(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def history(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:history"


def idempotency(key: str) -> str:
    return f"{PREFIX}:idem:{key}"


def job_lock(job_id: str) -> str:
    return f"{PREFIX}:lock:job:{job_id}"


ACTIVE = f"{PREFIX}:jobs:active"  # zset: unfinished job id -> last progress (unix s)
SWEEP_LOCK = f"{PREFIX}:lock:sweep"
TOKEN = f"{PREFIX}:oauth:token"
TOKEN_LOCK = f"{PREFIX}:oauth:lock"


def batch(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}"


def batch_rows(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}:rows"  # hash: row number -> job id


def batch_invalid(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}:invalid"  # list of JSON row errors
