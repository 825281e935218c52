"""Every Redis key cardload writes, in one place."""

from __future__ import annotations

PREFIX = "cardload"


def job(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def history(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:history"


def aliases(job_id: str) -> str:
    """Set: the other keys that name an unfinished job (``JobStore.add_keys``), to expire
    with its own key when it succeeds."""
    return f"{PREFIX}:job:{job_id}:aliases"


IDEMPOTENCY = f"{PREFIX}:idem:"


def idempotency(key: str) -> str:
    return f"{IDEMPOTENCY}{key}"


# SCAN pattern of job records (with TYPE hash: their histories and alias sets are not).
JOBS_MATCH = f"{PREFIX}:job:*"


def job_id_of(key: str) -> str | None:
    """The job id in a record's key; None for another key the pattern matches."""
    job_id = key.removeprefix(f"{PREFIX}:job:")
    return job_id if job_id != key and ":" not in job_id else None


ACTIVE = f"{PREFIX}:jobs:active"  # zset: unfinished job id -> last progress (unix s)
# set: ids in the stall watch whose record the sweep could not read, for a person
SET_ASIDE = f"{PREFIX}:jobs:set_aside"
SWEEP_LOCK = f"{PREFIX}:lock:sweep"
# A write whose replication a producer waits for (WAIT): every write before it is then
# on the replicas too, whichever connection made it.
REPLICATION_MARK = f"{PREFIX}:replication:mark"
# cardload 0.1 kept the access token here, readable by every Redis client; workers
# delete it at start.
LEGACY_TOKEN = f"{PREFIX}:oauth:token"


def dead_letter(index: str, job_id: str) -> str:
    """A dead letter's entry, beside the index (a sorted set) named ``index``."""
    return f"{index}:{job_id}"


def batch(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}"


def batch_rows(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}:rows"  # hash: job id -> its row in the latest file


def batch_invalid(batch_id: str) -> str:
    return f"{PREFIX}:batch:{batch_id}:invalid"  # list of JSON row errors


# API keys of the HTTP API (cardload.apikeys): hash key id -> the key's record (its
# name, scopes and the SHA-256 of its secret), hash name -> key id.
API_KEYS = f"{PREFIX}:api_keys"
API_KEY_NAMES = f"{PREFIX}:api_keys:names"

# Webhooks (cardload.webhooks): endpoints (hash id -> endpoint), the consumer group on
# the event stream, deliveries due (zset delivery id -> when, ms), each delivery's
# state (hash), the mark of a delivery answered 2xx, and the dead ones (zset).
WEBHOOK_ENDPOINTS = f"{PREFIX}:webhooks:endpoints"
WEBHOOK_GROUP = "cardload-webhooks"
WEBHOOK_DUE = f"{PREFIX}:webhooks:due"
WEBHOOK_DEAD = f"{PREFIX}:webhooks:dead"


def webhook_delivery(delivery_id: str) -> str:
    return f"{PREFIX}:webhooks:delivery:{delivery_id}"


def webhook_delivered(delivery_id: str) -> str:
    return f"{PREFIX}:webhooks:delivered:{delivery_id}"


# The API's flow control (cardload.flowcontrol), shared by every worker: the circuit
# breaker (hash: state, failures, open_until_ms, reason, openings, pause_until_ms), its
# probe's lease, the rate limit's theoretical arrival time (GCRA), calls in flight
# (zset token -> lease end, ms).
BREAKER = f"{PREFIX}:api:breaker"
BREAKER_PROBE = f"{PREFIX}:api:breaker:probe"
RATE = f"{PREFIX}:api:rate"
IN_FLIGHT = f"{PREFIX}:api:in_flight"
