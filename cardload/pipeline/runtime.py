"""The pipeline and its resources: one Redis connection pool, one httpx connection
pool, one access token, the API's shared breaker and rate limit, and one lease keeper.
cardload's app builds one per worker process (again in a forked child, which must not
share its parent's sockets).
"""

from __future__ import annotations

import httpx
import redis

from cardload.config import Settings
from cardload.flowcontrol import api_gate
from cardload.jobs.connection import connect
from cardload.jobs.leases import LeaseKeeper
from cardload.jobs.store import job_store
from cardload.pipeline.steps import Pipeline
from cardload.secuconnect import (
    Credentials,
    MemoryTokenSource,
    SecuconnectClient,
    build_http,
    fetch_token,
)


def redis_client(settings: Settings) -> redis.Redis:
    return connect(settings.redis_url, health_check_interval=30)


def build_pipeline(
    settings: Settings,
    *,
    client: redis.Redis | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Pipeline:
    settings.require_secuconnect()
    secu = settings.secuconnect
    assert secu.client_id and secu.client_secret
    client = client or redis_client(settings)
    http = build_http(
        secu.base_url,
        timeout=httpx.Timeout(
            connect=secu.connect_timeout_s,
            read=secu.read_timeout_s,
            write=secu.write_timeout_s,
            pool=secu.pool_timeout_s,
        ),
        max_connections=secu.max_connections,
        transport=transport,
    )
    credentials = Credentials(secu.client_id, secu.client_secret)
    gate = api_gate(client, settings)
    # The token stays in this process: see secuconnect.tokens for why not in Redis.
    tokens = MemoryTokenSource(
        lambda: gate.fetch_token(lambda: fetch_token(http, credentials)),
        margin_s=secu.token_refresh_margin_s,
        backoff_base_s=settings.retry.base_backoff_s,
        backoff_max_s=min(60.0, settings.retry.max_backoff_s),
    )
    store = job_store(client, settings)
    leases = LeaseKeeper(store, int(settings.jobs.lease_s * 1000), secu.step_budget_s)
    return Pipeline(
        store=store, client=SecuconnectClient(http, tokens, gate), leases=leases, settings=settings
    )
