"""Shared fixtures: a fresh in-process sandbox per test, and clients bound to it."""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import httpx
import pytest
import redis

from cardload.sandbox import SandboxApp, SandboxTransport
from cardload.secuconnect import MemoryTokenSource, SecuconnectClient, build_http, fetch_token
from tests.services import redis_server
from tests.support import CREDENTIALS


@pytest.fixture
def app() -> SandboxApp:
    return SandboxApp()


@pytest.fixture
def sleeps() -> list[float]:
    """Waits the in-process transport was asked for (it records instead of sleeping)."""
    return []


@pytest.fixture
def http(app: SandboxApp, sleeps: list[float]) -> Iterator[httpx.Client]:
    with build_http(
        "http://sandbox.test", transport=SandboxTransport(app, sleep=sleeps.append)
    ) as client:
        yield client


@pytest.fixture
def token(http: httpx.Client) -> str:
    return fetch_token(http, CREDENTIALS).access_token.get_secret_value()


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(http: httpx.Client) -> SecuconnectClient:
    return SecuconnectClient(http, MemoryTokenSource(lambda: fetch_token(http, CREDENTIALS)))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private redis-server for the whole run (never the machine's shared one)."""
    with redis_server() as url:
        yield url


@pytest.fixture
def real_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()
