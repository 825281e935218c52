"""The API served by uvicorn on a real socket (a thread of the test process), on our
own redis-server: no worker, the messages wait in the broker's lists."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
import redis
import uvicorn

from cardload.api import create_api
from cardload.api.services import Services
from cardload.apikeys import ApiKeyStore
from cardload.config import Settings
from tests.services import free_port, wait_for
from tests.support import make_settings


@dataclass
class Api:
    http: httpx.Client
    services: Services
    settings: Settings
    keys: dict[str, str]  # by name: all scopes, submit only, read only

    def auth(self, name: str = "all") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}


@contextmanager
def serve_api(services: Services) -> Iterator[httpx.Client]:
    """The app of ``services`` served by uvicorn on a free port in a thread, and a client
    of it; stopped afterwards (what an order system talks to, over a real socket)."""
    port = free_port()
    config = uvicorn.Config(
        create_api(found=services), host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "the API to listen")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def api(real_redis: redis.Redis, redis_url: str) -> Iterator[Api]:
    settings = make_settings(
        redis_url, "http://sandbox.test", api={"max_body_bytes": 4096, "max_batch_bytes": 20_000}
    )
    services = Services.from_settings(settings)
    store = ApiKeyStore(real_redis)
    keys = {
        "all": store.create("all", ["submit", "read", "operate"])[1],
        "submit": store.create("shop", ["submit"])[1],
        "read": store.create("reader", ["read"])[1],
    }
    with serve_api(services) as http:
        yield Api(http, services, settings, keys)
