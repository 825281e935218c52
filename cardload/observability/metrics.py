"""cardload's Prometheus metrics, on a registry of its own.

Nothing is added to prometheus_client's default registry: a host process that imports
cardload (an order system with metrics of its own) sees no new series and no name
clash. The worker serves this registry with ``--metrics-port``, the HTTP API at
``/metrics`` (``worker.metrics`` adds the gauges read from Redis at each scrape).

Counters and histograms are per process, as Prometheus expects: sum them over
workers. The children of a ``prefork`` pool count in their own memory, which the
parent does not serve; the default ``threads`` pool runs every step in the process
that serves them.

Every name starts with ``cardload_``; ``deploy/prometheus`` and ``deploy/grafana`` use
only the names listed in :data:`NAMES` (a test checks).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

# Seconds: a step or an API call is a few milliseconds next door and up to the read
# timeout (30 s) far away.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

JOBS = Counter(
    "cardload_jobs",
    "Card loads finished, by outcome (succeeded, dead_lettered).",
    ["outcome"],
    registry=REGISTRY,
)
STEP_ATTEMPTS = Counter(
    "cardload_step_attempts",
    "Steps claimed and run, by step (create, start); each counts an attempt of the job's.",
    ["step"],
    registry=REGISTRY,
)
STEP_RETRIES = Counter(
    "cardload_step_retries",
    "Steps to be run again later, by step and reason (the error kind, pending, token, "
    "breaker, locked, fence_lost).",
    ["step", "reason"],
    registry=REGISTRY,
)
STEP_DURATION = Histogram(
    "cardload_step_duration_seconds",
    "Time a claimed step took, by step and outcome (continue, retry, finished).",
    ["step", "outcome"],
    buckets=_BUCKETS,
    registry=REGISTRY,
)
API_CALLS = Histogram(
    "cardload_api_call_duration_seconds",
    "secuconnect calls by endpoint (token, create, get, start, prepare, cancel, list) and "
    "status (the HTTP status; retryable: not sent, ambiguous: sent and no answer).",
    ["endpoint", "status"],
    buckets=_BUCKETS,
    registry=REGISTRY,
)
TOKEN_FETCHES = Counter(
    "cardload_token_fetches",
    "Access tokens fetched, by outcome (ok, failed, refused: the credentials were refused).",
    ["outcome"],
    registry=REGISTRY,
)
BREAKER_STATE = Gauge(
    "cardload_breaker_state",
    "The shared circuit breaker as this process last saw it: 0 closed, 1 half-open, 2 open.",
    registry=REGISTRY,
)
BREAKER_OPENINGS = Counter(
    "cardload_breaker_openings",
    "Times this process opened the shared circuit breaker, by reason.",
    ["reason"],
    registry=REGISTRY,
)
RATE_LIMIT_WAITS = Counter(
    "cardload_rate_limit_waits",
    "API calls that waited for the shared rate limit (requests per second, calls in "
    "flight, a 429's Retry-After).",
    ["limit"],
    registry=REGISTRY,
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "cardload_rate_limit_wait_seconds",
    "Seconds API calls waited for the shared rate limit.",
    ["limit"],
    registry=REGISTRY,
)

# Read from Redis and the broker at each scrape (``worker.metrics``): the same for every
# process that serves them, so aggregate with max(), not sum().
QUEUE_DEPTH = "cardload_queue_depth"
DEAD_LETTERS = "cardload_dead_letters"
JOBS_ACTIVE = "cardload_jobs_active"

NAMES = frozenset(
    {
        "cardload_jobs_total",
        "cardload_step_attempts_total",
        "cardload_step_retries_total",
        "cardload_step_duration_seconds",
        "cardload_api_call_duration_seconds",
        "cardload_token_fetches_total",
        "cardload_breaker_state",
        "cardload_breaker_openings_total",
        "cardload_rate_limit_waits_total",
        "cardload_rate_limit_wait_seconds_total",
        QUEUE_DEPTH,
        DEAD_LETTERS,
        JOBS_ACTIVE,
    }
)

SUCCEEDED = JOBS.labels("succeeded")
DEAD_LETTERED = JOBS.labels("dead_lettered")
