"""OAuth 2 client_credentials: fetching a token, and caching it in memory.

The Redis-backed cache that all worker processes share builds on the same
:class:`TokenSource` protocol.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

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
