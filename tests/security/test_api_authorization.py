"""Authorization of every route of the HTTP API, read from the app's own route table
(``cardload.api.create_api``): a route added later is covered without editing this
file, and one that is neither in :data:`PUBLIC` nor guarded by ``require(scope)``
fails :func:`test_every_route_is_public_or_needs_a_scope`.

For each guarded route: no key, another scheme or a malformed key answer 401 with
``WWW-Authenticate: Bearer``; a revoked key and a key with a wrong secret 401; a key
holding every scope but the route's 403; a key holding only the route's scope is let
in (any status but 401 and 403: the empty requests sent here may well be 404 or 422).
The app is served by uvicorn on a socket in this process, as in tests/api."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fastapi.routing
import httpx
import pytest
import redis
from fastapi import FastAPI

from cardload.api import create_api
from cardload.api.services import Services
from cardload.apikeys import SCOPES, ApiKeyStore
from tests.api.conftest import serve_api
from tests.support import make_settings

# Routes that answer without a key, on purpose: the probes and the API's documentation.
PUBLIC = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
    }
)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # the template, /v1/card-loads/{job_id}
    scopes: tuple[str, ...]  # the scopes its require() dependencies ask for

    @property
    def url(self) -> str:
        return re.sub(r"\{[^}]+\}", "0" * 32, self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _required_scopes(dependant: Any) -> Iterator[str]:
    """The ``scope`` of every ``cardload.api.auth.require(scope)`` among the route's
    dependencies, at any depth (the checker is a closure over it)."""
    for sub in getattr(dependant, "dependencies", ()):
        code = getattr(sub.call, "__code__", None)
        if code is not None and "scope" in code.co_freevars and sub.call.__closure__:
            yield sub.call.__closure__[code.co_freevars.index("scope")].cell_contents
        yield from _required_scopes(sub)


def route_table(app: FastAPI) -> list[Endpoint]:
    """Every (method, path) the app serves, HEAD left out (it is GET's)."""
    walk = getattr(fastapi.routing, "iter_route_contexts", None)  # routers included lazily
    routes: list[Any] = list(walk(app.routes)) if walk else list(app.routes)
    found = []
    for route in routes:
        scopes = tuple(_required_scopes(getattr(route, "dependant", None)))
        for method in sorted(set(route.methods or ()) - {"HEAD"}):
            found.append(Endpoint(method, route.path, scopes))
    return found


def _table() -> list[Endpoint]:
    # Building the app connects to nothing: the table is read at collection.
    settings = make_settings("redis://127.0.0.1:9/0", "http://sandbox.test")
    return route_table(create_api(found=Services.from_settings(settings)))


ROUTES = _table()
GUARDED = [e for e in ROUTES if (e.method, e.path) not in PUBLIC]
OPEN = [e for e in ROUTES if (e.method, e.path) in PUBLIC]


@dataclass
class Served:
    http: httpx.Client
    store: ApiKeyStore
    keys: dict[str, str]  # by scope: a key with that scope only; "all": every scope

    def call(self, endpoint: Endpoint, key: str | None = None, scheme: str = "Bearer") -> Any:
        headers = {"Authorization": f"{scheme} {key}".strip()} if key is not None else {}
        return self.http.request(endpoint.method, endpoint.url, headers=headers)


@pytest.fixture(scope="module")
def served(redis_url: str) -> Iterator[Served]:
    settings = make_settings(redis_url, "http://sandbox.test")
    services = Services.from_settings(settings)
    store = ApiKeyStore(redis.Redis.from_url(redis_url))
    run = uuid.uuid4().hex[:8]
    keys: dict[str, str] = {s: store.create(f"authz-{run}-{s}", [s])[1] for s in SCOPES}
    keys["all"] = store.create(f"authz-{run}-all", list(SCOPES))[1]
    with serve_api(services) as http:
        yield Served(http, store, keys)
        store.redis.close()


def test_every_route_is_public_or_needs_a_scope() -> None:
    served_routes = {(e.method, e.path) for e in ROUTES}
    assert served_routes >= PUBLIC, f"stale public routes: {sorted(PUBLIC - served_routes)}"
    unguarded = [str(e) for e in GUARDED if not e.scopes]
    assert not unguarded, f"routes without an API key check, not listed as public: {unguarded}"
    guarded_public = [str(e) for e in OPEN if e.scopes]
    assert not guarded_public, f"listed as public but guarded: {guarded_public}"
    assert all(len(e.scopes) == 1 and e.scopes[0] in SCOPES for e in GUARDED), GUARDED
    assert len(GUARDED) >= 8  # the table was read (card loads, batches, dead letters, metrics)


def _unauthorized(answer: httpx.Response, endpoint: Endpoint) -> None:
    assert answer.status_code == 401, (str(endpoint), answer.status_code, answer.text)
    assert answer.headers.get("www-authenticate", "").lower().startswith("bearer"), endpoint
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("endpoint", OPEN, ids=str)
def test_public_routes_answer_without_a_key(served: Served, endpoint: Endpoint) -> None:
    answer = served.call(endpoint)
    assert answer.status_code == 200, (str(endpoint), answer.status_code, answer.text)


@pytest.mark.parametrize("endpoint", GUARDED, ids=str)
def test_no_key_is_401(served: Served, endpoint: Endpoint) -> None:
    _unauthorized(served.call(endpoint), endpoint)
    _unauthorized(served.call(endpoint, served.keys["all"], scheme="Basic"), endpoint)
    _unauthorized(served.call(endpoint, "", scheme="Bearer"), endpoint)
    _unauthorized(served.call(endpoint, "not-a-key"), endpoint)


@pytest.mark.parametrize("endpoint", GUARDED, ids=str)
def test_a_revoked_or_wrong_key_is_401(served: Served, endpoint: Endpoint) -> None:
    name = f"revoked-{uuid.uuid4().hex[:8]}"
    _, key = served.store.create(name, list(SCOPES))
    assert served.call(endpoint, key).status_code not in (401, 403)  # valid until revoked
    assert served.store.revoke(name)
    _unauthorized(served.call(endpoint, key), endpoint)
    good = served.keys["all"]
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    _unauthorized(served.call(endpoint, wrong_secret), endpoint)


@pytest.mark.parametrize("endpoint", GUARDED, ids=str)
def test_a_key_without_the_scope_is_403(served: Served, endpoint: Endpoint) -> None:
    [needed] = endpoint.scopes
    name = f"lacks-{needed}-{uuid.uuid4().hex[:8]}"
    _, every_other = served.store.create(name, [s for s in SCOPES if s != needed])
    for key in [served.keys[s] for s in SCOPES if s != needed] + [every_other]:
        answer = served.call(endpoint, key)
        assert answer.status_code == 403, (str(endpoint), answer.status_code, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert key not in answer.text


@pytest.mark.parametrize("endpoint", GUARDED, ids=str)
def test_the_routes_scope_lets_the_key_in(served: Served, endpoint: Endpoint) -> None:
    [needed] = endpoint.scopes
    for key in (served.keys[needed], served.keys["all"]):
        answer = served.call(endpoint, key)
        assert answer.status_code not in (401, 403), (str(endpoint), answer.text)
