"""OAuth 2 client_credentials: fetching a token, caching it per process or in Redis
for all processes (both behind the :class:`TokenSource` protocol)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from pydantic import SecretStr, ValidationError

from secuconnect.classify import classify_response, classify_transport_error, parse_api_error
from secuconnect.errors import AuthenticationError, RetryableError, SecuconnectError
from secuconnect.models import OAuthErrorBody, OAuthToken

TOKEN_PATH = "/oauth/token"


class TokenSource(Protocol):
    """Hands out a bearer token; ``invalidate`` drops one the API refused."""

    def token(self) -> str: ...

    def invalidate(self, token: str) -> None: ...


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: SecretStr

    def __repr__(self) -> str:
        return f"Credentials(client_id={self.client_id!r}, client_secret=**********)"


def fetch_token(http: httpx.Client, credentials: Credentials) -> OAuthToken:
    """POST /oauth/token with grant_type client_credentials."""
    form = {
        "grant_type": "client_credentials",
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret.get_secret_value(),
    }
    try:
        response = http.post(TOKEN_PATH, json=form, headers={"Accept": "application/json"})
    except httpx.TransportError as exc:
        # Fetching a token has no effect worth reconciling: always safe to repeat.
        raise RetryableError(classify_transport_error("GET", exc).message) from None
    if response.status_code == 200:
        try:
            return OAuthToken.model_validate_json(response.content)
        except ValidationError:
            raise RetryableError("token endpoint answered 200 with an unreadable body") from None
    if response.status_code in (400, 401, 403):
        raise _auth_error(response)
    error = classify_response(
        "GET", response.status_code, response.content, response.headers.get("content-type", "")
    )
    raise error


def _auth_error(response: httpx.Response) -> SecuconnectError:
    try:
        body = OAuthErrorBody.model_validate_json(response.content)
        detail = body.error + (f" ({body.error_description})" if body.error_description else "")
    except ValidationError:
        api_error = parse_api_error(response.content)
        detail = api_error.error if api_error else "no readable error body"
    return AuthenticationError(f"token request refused: {detail}", http_status=response.status_code)


class MemoryTokenSource:
    """Caches one token per process until ``expires_in - margin_s``; thread-safe."""

    def __init__(
        self,
        fetch: Callable[[], OAuthToken],
        *,
        margin_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._margin_s = margin_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._valid_until = 0.0

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._valid_until:
                fetched = self._fetch()
                self._token = fetched.access_token.get_secret_value()
                lifetime = max(fetched.expires_in - self._margin_s, fetched.expires_in / 2)
                self._valid_until = self._clock() + lifetime
            return self._token

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None


class RedisTokenSource:
    """One token for every worker process and host, cached in Redis.

    Refreshed before expiry by one process at a time (a lock, not a stampede): the
    others wait for the new token to appear. Each process also keeps the token in
    memory until shortly before the Redis copy expires.
    """

    _RELEASE = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
    return 0
    """

    def __init__(
        self,
        client: Any,
        fetch: Callable[[], OAuthToken],
        *,
        key: str,
        lock_key: str,
        margin_s: float = 30.0,
        wait_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._redis = client
        self._fetch = fetch
        self._key = key
        self._lock_key = lock_key
        self._margin_s = margin_s
        self._wait_s = wait_s
        self._clock = clock
        self._sleep = sleep
        self._release = client.register_script(self._RELEASE)
        self._local = threading.local()
        self.fetches = 0  # how often this process fetched a token (for tests and metrics)

    def token(self) -> str:
        cached = getattr(self._local, "cached", None)
        if cached and self._clock() < cached[1]:
            return str(cached[0])
        deadline = self._clock() + self._wait_s
        while True:
            found = self._from_redis()
            if found:
                return found
            if self._refresh_if_first():
                continue  # read back what we (or a faster process) stored
            if self._clock() > deadline:
                raise RetryableError("waited too long for another process to refresh the token")
            self._sleep(0.05)

    def invalidate(self, token: str) -> None:
        self._local.cached = None
        self._release(keys=[self._key], args=[token])

    def _from_redis(self) -> str | None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(self._key)
        pipe.pttl(self._key)
        value, ttl_ms = pipe.execute()
        if not value or ttl_ms <= 0:
            return None
        token = value.decode() if isinstance(value, bytes) else str(value)
        self._local.cached = (token, self._clock() + ttl_ms / 1000)
        return token

    def _refresh_if_first(self) -> bool:
        """Fetch and store a token if we win the lock; True if we held it."""
        lock = uuid.uuid4().hex
        if not self._redis.set(self._lock_key, lock, nx=True, px=int(self._wait_s * 1000)):
            return False
        try:
            if self._redis.exists(self._key):
                return True
            fetched = self._fetch()
            self.fetches += 1
            lifetime = max(fetched.expires_in - self._margin_s, fetched.expires_in / 2)
            self._redis.set(
                self._key, fetched.access_token.get_secret_value(), px=int(lifetime * 1000)
            )
            return True
        finally:
            self._release(keys=[self._lock_key], args=[lock])
