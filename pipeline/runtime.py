"""The pipeline's resources, built once per worker process.

One Redis connection pool and one httpx connection pool per process; rebuilt if
the process was forked (a prefork child must not share its parent's sockets).
"""

from __future__ import annotations

import os
import threading

import httpx
import redis

from config import Settings, load_settings
from deadletters.store import DeadLetterStore
from events.stream import EventStream
from jobs import keys
from jobs.store import JobStore
from pipeline.steps import Pipeline
from secuconnect import Credentials, SecuconnectClient, build_http, fetch_token
from secuconnect.tokens import RedisTokenSource


class _PerProcess:
    lock = threading.Lock()
    pid = 0
    pipeline: Pipeline | None = None


def redis_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, health_check_interval=30)


def event_stream(client: redis.Redis, settings: Settings) -> EventStream:
    return EventStream(client, settings.events.stream, settings.events.stream_maxlen)


def dead_letter_store(client: redis.Redis, settings: Settings) -> DeadLetterStore:
    return DeadLetterStore(client, settings.events.dead_letters, event_stream(client, settings))


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
    tokens = RedisTokenSource(
        client,
        lambda: fetch_token(http, credentials),
        key=keys.TOKEN,
        lock_key=keys.TOKEN_LOCK,
        margin_s=secu.token_refresh_margin_s,
    )
    return Pipeline(
        store=JobStore(client),
        client=SecuconnectClient(http, tokens),
        events=event_stream(client, settings),
        dead_letters=dead_letter_store(client, settings),
        settings=settings,
    )


def current() -> Pipeline:
    """This process's pipeline, built on first use."""
    state = _PerProcess
    with state.lock:
        if state.pipeline is None or state.pid != os.getpid():
            state.pipeline, state.pid = build_pipeline(load_settings()), os.getpid()
        return state.pipeline
