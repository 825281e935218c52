"""The settings tree.

Every variable is ``CARDLOAD_<SECTION>_<FIELD>`` (or ``CARDLOAD_<FIELD>`` at the top),
so the names below are public interface. Secrets are ``SecretStr``: they print as
``**********`` and error messages never echo input values.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from cardload.errors import CardloadError

ENV_PREFIX = "CARDLOAD_"

# redis+sentinel://host:port[,host:port]/service[/db]: a primary and replicas behind
# Sentinel (cardload.jobs.connection).
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://")
_BROKER_SCHEMES = (*_REDIS_SCHEMES, "amqp://", "amqps://", "pyamqp://", "memory://")
_SECUCONNECT_ID = r"^{prefix}_[A-Z0-9]{{30}}$"


def _scheme_checker(schemes: tuple[str, ...]) -> AfterValidator:
    def check(url: str) -> str:
        if not url.startswith(schemes):
            raise ValueError(f"must start with one of {', '.join(schemes)}")
        # A password holding / ? # or @ unencoded splits the URL in the wrong place:
        # the client would connect elsewhere, and print the password as a host or path.
        userinfo, at, _ = url.split("://", 1)[1].rpartition("@")
        if at and any(c in userinfo for c in "/?#@"):
            raise ValueError(
                "its user name or password holds / ? # or @: write them URL-encoded "
                "(%2F %3F %23 %40)"
            )
        hosts = url.split("://", 1)[1].rpartition("@")[2].partition("/")[0]
        try:
            for host in hosts.split(",") if url.startswith("redis+sentinel://") else [hosts]:
                _ = urlsplit(f"//{host}").port  # raises for a port that is not a number
        except ValueError:
            raise ValueError("its port is not a number from 0 to 65535") from None
        if url.startswith("redis+sentinel://"):
            path = [p for p in url.split("://", 1)[1].partition("/")[2].split("/") if p]
            if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
                raise ValueError("write it as redis+sentinel://host:port[,host:port]/service[/db]")
        return url

    return AfterValidator(check)


def _http_url(url: str) -> str:
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError("must be an http:// or https:// URL")
    return url.rstrip("/")


RedisUrl = Annotated[str, _scheme_checker(_REDIS_SCHEMES)]
BrokerUrl = Annotated[str, _scheme_checker(_BROKER_SCHEMES)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Seconds = Annotated[float, Field(gt=0)]


# The start methods (``/start/{method}``) a card load may be paid with; secuconnect.methods
# has the API's full lists. Not "loyalty": it pays with the card being loaded, so the load
# would pay for itself. Not "cashless_direct": it needs the terminal's tid and trace.
LoadMethod = Literal["cash", "cashless", "debit", "invoice", "prepaid", "ccload", "demo"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class SecuconnectSettings(_Section):
    """Where and as whom to call secuconnect. Credentials are optional here and
    demanded by :meth:`Settings.require_secuconnect` on worker start, so a producer
    host never needs the client secret."""

    base_url: HttpUrl = "https://connect-testing.secuconnect.com"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    contract_id: Annotated[str, Field(pattern=_SECUCONNECT_ID.format(prefix="GCR"))] | None = None
    device_id: Annotated[str, Field(pattern=_SECUCONNECT_ID.format(prefix="SDV"))] | None = None
    connect_timeout_s: Seconds = 5.0
    read_timeout_s: Seconds = 30.0
    write_timeout_s: Seconds = 10.0
    pool_timeout_s: Seconds = 10.0
    max_connections: Annotated[int, Field(ge=1, le=1000)] = 50
    # The SDKs cache a token for expires_in - 10 s; we refresh a little earlier so a
    # request never starts with a token that expires while it is in flight.
    token_refresh_margin_s: Annotated[int, Field(ge=0, le=600)] = 30
    # How a load is paid when its job does not say: "cash" is the merchant taking the
    # money itself, which secupay records and does not process (README, "Choices").
    start_method: LoadMethod = "cash"

    @property
    def call_budget_s(self) -> float:
        """The longest one call can take while every byte keeps within its timeouts."""
        return (
            self.pool_timeout_s
            + self.connect_timeout_s
            + self.write_timeout_s
            + (self.read_timeout_s)
        )

    @property
    def step_budget_s(self) -> float:
        """The longest a step can take: a token fetch, then at most four calls (a start:
        read, start, read back, a last read before failing), each repeated once after a
        refused token, with a token fetch before the repeat."""
        return self.call_budget_s * (1 + 4 * 3) + 5.0


class RetrySettings(_Section):
    """Exponential backoff with full jitter: delay = uniform(0, min(max, base * 2**n))."""

    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    base_backoff_s: Seconds = 1.0
    max_backoff_s: Seconds = 300.0

    @model_validator(mode="after")
    def _base_below_max(self) -> RetrySettings:
        if self.base_backoff_s > self.max_backoff_s:
            raise ValueError(
                "CARDLOAD_RETRY_BASE_BACKOFF_S must not exceed CARDLOAD_RETRY_MAX_BACKOFF_S"
            )
        return self


class EventSettings(_Section):
    """Redis keys of the result-event stream and the dead-letter store."""

    stream: Annotated[str, Field(min_length=1)] = "cardload:events"
    stream_maxlen: Annotated[int, Field(ge=1000)] = 1_000_000
    dead_letters: Annotated[str, Field(min_length=1)] = "cardload:dead_letters"
    mask_card_numbers: bool = True


class JobSettings(_Section):
    """Limits on what a job may do, and how long before a silent job is re-dispatched."""

    max_amount_cents: Annotated[int, Field(ge=1, le=100_000_000)] = 50_000
    queue: Annotated[str, Field(min_length=1)] = "cardload"
    # An unacknowledged message comes back after this long (Redis broker); it must
    # exceed every retry delay or Celery runs a delayed retry twice.
    visibility_timeout_s: Annotated[int, Field(ge=10)] = 3600
    # A job with no progress for this long gets its current step sent again
    # (a lost message, a producer that died between accepting and sending).
    stall_after_s: Annotated[int, Field(ge=10)] = 7200
    # A running step's lease on its job: renewed while the step runs, so it only runs
    # out when the worker died or froze; then the next delivery may take the job over.
    lease_s: Annotated[float, Field(ge=1, le=600)] = 30.0
    # Before a first create, look the transaction up by merchantRef: "always" (one more
    # API call per job; whatever Redis lost, even a job's whole record and its key, the
    # API's own record is asked), or "after_doubt" (a retry, a replay, a takeover, a
    # Redis that restarted or failed over since the record was written): only for a
    # Redis that never loses an acknowledged write (appendfsync always, no failover to a
    # replica that may lag).
    create_lookup: Literal["always", "after_doubt"] = "always"
    # A payment still in flight (processing, pending, approved) is read again, without
    # using up attempts, until this long after it was first seen so; then the job is
    # dead-lettered as possibly loaded, for a person to replay once it settled.
    payment_timeout_s: Annotated[int, Field(ge=10)] = 3600
    # Redis replicates asynchronously: a job admitted just before its primary dies may
    # not be on the replica a failover promotes. With n > 0 an enqueue returns only once
    # n replicas hold it (WAIT); when they do not within the timeout it says so as
    # unavailable (the jobs are in and will run; the same keys again make sure).
    replicas_ack: Annotated[int, Field(ge=0, le=16)] = 0
    replicas_ack_timeout_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    # Keys batch-file rows that have no reference (an HMAC of the row's content): set it
    # on producer hosts once, never change it. Without it such rows are refused.
    row_key_secret: SecretStr | None = None


class RetentionSettings(_Section):
    """How long Redis keeps what finished jobs leave (it runs with ``noeviction``: what is
    never deleted fills it). Dead-lettered jobs and their entries are kept until they
    are replayed or purged (``cardload jobs purge``)."""

    # A succeeded job's record and history, from its success.
    jobs_s: Annotated[int, Field(ge=60)] = 30 * 86_400
    # Its idempotency key, from its success: the same key sent again within this is the
    # same load (never loaded again); after it, a new job. It must exceed every
    # producer's resubmission window.
    keys_s: Annotated[int, Field(ge=60)] = 400 * 86_400
    # Result events, by age (entry id), besides CARDLOAD_EVENTS_STREAM_MAXLEN.
    events_s: Annotated[int, Field(ge=60)] = 7 * 86_400

    @model_validator(mode="after")
    def _keys_outlive_records(self) -> RetentionSettings:
        # A key gone before its record: the record still shows the load, a resubmission
        # of its key would load again.
        if self.keys_s < self.jobs_s:
            raise ValueError("CARDLOAD_RETENTION_KEYS_S must be at least CARDLOAD_RETENTION_JOBS_S")
        return self


class BreakerSettings(_Section):
    """The circuit breaker every worker shares (``cardload.flowcontrol``): when the API
    fails every call (or refuses our credentials), jobs wait instead of failing."""

    failures: Annotated[int, Field(ge=1, le=10_000)] = 20  # in a row, across all workers
    open_s: Seconds = 30.0  # the first wait before a probe; doubles with each opening
    max_open_s: Seconds = 600.0
    probe_timeout_s: Seconds = 60.0  # a probe not back by then: another may go


class RateLimitSettings(_Section):
    """One limit for every worker's calls to the API, kept in Redis; 0 is no limit."""

    per_s: Annotated[float, Field(ge=0)] = 0.0  # requests per second
    burst: Annotated[int, Field(ge=1)] = 1  # requests at once within per_s
    in_flight: Annotated[int, Field(ge=0)] = 0  # calls under way at once
    max_wait_s: Seconds = 5.0  # a call held longer waits as a job, not in a thread


class WorkerSettings(_Section):
    """Defaults of ``cardload worker``; command-line options override them."""

    pool: Literal["threads", "prefork", "solo", "gevent", "eventlet"] = "threads"
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 32
    # Prometheus metrics on http://<metrics_host>:<metrics_port>/metrics; off unless set
    # (``cardload worker --metrics-port P``).
    metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    metrics_host: str = "0.0.0.0"


class ApiSettings(_Section):
    """``cardload api``: where it listens and what it takes."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    # A batch upload larger than this is refused (413) while it streams in. Parsing a
    # file takes about 80 times its size in memory while it runs (one at a time per
    # process): 5 MiB is about 150,000 rows.
    max_batch_bytes: Annotated[int, Field(ge=1024, le=256 * 1024**2)] = 5 * 1024 * 1024
    # A card-load body larger than this is refused (413); one load is a few hundred bytes.
    max_body_bytes: Annotated[int, Field(ge=1024, le=16 * 1024**2)] = 64 * 1024


class WebhookSettings(_Section):
    """Delivery of result events to the endpoints ``cardload webhooks add`` registers."""

    # Endpoints on this host, or on private networks, are refused unless allowed: a URL
    # must not make the workers probe what only they can reach.
    allow_loopback: bool = False
    allow_private: bool = False
    # A delivery that fails is tried again with backoff for this long, then
    # dead-lettered for its endpoint (replayable).
    retry_for_s: Annotated[int, Field(ge=60)] = 86_400
    base_backoff_s: Seconds = 5.0
    max_backoff_s: Seconds = 3600.0
    timeout_s: Seconds = 10.0
    # A delivery worker that took events and went silent this long (it died) has them
    # claimed by another.
    claim_idle_s: Annotated[float, Field(ge=1)] = 60.0
    # Whether ``cardload worker`` runs a delivery worker in a thread of its own.
    in_worker: bool = True


class LogSettings(_Section):
    format: Literal["json", "console"] = "json"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(BaseSettings):
    """The whole tree. Build it with :func:`load_settings` for readable errors."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,  # a URL's password, a secret
    )

    redis_url: RedisUrl = "redis://127.0.0.1:6379/0"
    broker_url: BrokerUrl | None = None
    secuconnect: SecuconnectSettings = SecuconnectSettings()
    retry: RetrySettings = RetrySettings()
    events: EventSettings = EventSettings()
    jobs: JobSettings = JobSettings()
    retention: RetentionSettings = RetentionSettings()
    breaker: BreakerSettings = BreakerSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    worker: WorkerSettings = WorkerSettings()
    api: ApiSettings = ApiSettings()
    webhooks: WebhookSettings = WebhookSettings()
    log: LogSettings = LogSettings()

    @model_validator(mode="after")
    def _a_probe_outlives_its_call(self) -> Settings:
        secu = self.secuconnect
        longest_call_s = secu.connect_timeout_s + secu.write_timeout_s + secu.read_timeout_s
        if self.breaker.probe_timeout_s <= longest_call_s:
            raise ValueError(
                "CARDLOAD_BREAKER_PROBE_TIMEOUT_S must exceed the secuconnect connect, write "
                "and read timeouts together, or a slow probe's answer is never heard"
            )
        return self

    @model_validator(mode="after")
    def _retries_fit_the_visibility_timeout(self) -> Settings:
        if self.retry.max_backoff_s * 2 > self.jobs.visibility_timeout_s:
            raise ValueError(
                "CARDLOAD_RETRY_MAX_BACKOFF_S must be at most half of "
                "CARDLOAD_JOBS_VISIBILITY_TIMEOUT_S, or a delayed retry runs twice"
            )
        return self

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    def require_secuconnect(self) -> None:
        """Fail unless everything needed to call secuconnect is set."""
        needed = ("client_id", "client_secret", "contract_id", "device_id")
        missing = [name for name in needed if not getattr(self.secuconnect, name)]
        if missing:
            raise SettingsError(
                [
                    f"{env_name(('secuconnect', name))}: required to call secuconnect, but not set"
                    for name in missing
                ]
            )


class SettingsError(CardloadError):
    """Invalid or missing settings, one line per variable, never with its value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


def to_env(settings: Settings) -> dict[str, str]:
    """The settings as ``CARDLOAD_*`` variables, secrets included: only for handing the
    configuration to a child process (a worker the demo or a test starts)."""
    env: dict[str, str] = {}
    for name, value in settings:
        children = value if isinstance(value, BaseModel) else [(None, value)]
        for child, inner in children:
            if inner is not None:
                env[env_name((name, child) if child else (name,))] = _env_text(inner)
    return env


def _env_text(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value).lower() if isinstance(value, bool) else str(value)


def env_name(loc: tuple[str | int, ...]) -> str:
    return ENV_PREFIX + "_".join(str(part) for part in loc).upper()


def load_settings(env_file: Path | str | None = ".env") -> Settings:
    """Read the environment (and ``env_file`` if it exists) into :class:`Settings`."""
    try:
        return Settings(_env_file=env_file)
    except ValidationError as exc:
        # Deliberately not str(exc): pydantic would echo the input, which may be a secret.
        raise SettingsError(
            [f"{env_name(err['loc'])}: {err['msg']}" for err in exc.errors()]
        ) from None
