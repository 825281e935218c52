"""OAuth 2 client_credentials: fetching a token and caching it in the worker process.

The token is held in this process's memory only. A shared copy in Redis would let
every host that can reach Redis (producers, which never need the client secret)
read a live token and start transactions with it; one fetch per worker process
every ``expires_in`` is a small price for that.

A token endpoint that fails, for whatever reason (timeouts, 5xx, an HTML page from
a gateway, a 4xx, even refused credentials), raises :class:`TokenUnavailableError`:
the job waits and is retried, it is never dead-lettered for it. After a failure the
endpoint is not asked again until a backoff has passed, so a hundred waiting steps
do not become a hundred failing fetches.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx
from pydantic import SecretStr, ValidationError

from cardload.observability.metrics import API_CALLS, TOKEN_FETCHES
from cardload.secuconnect.classify import describe_body, parse_api_error, parse_retry_after
from cardload.secuconnect.errors import TokenUnavailableError
from cardload.secuconnect.models import OAuthErrorBody, OAuthToken

TOKEN_PATH = "/oauth/token"
# OAuth error codes that mean the credentials themselves were refused (RFC 6749, 5.2).
_REFUSED = frozenset({"invalid_client", "unauthorized_client", "invalid_grant"})


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


_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750's b64token


def fetch_token(http: httpx.Client, credentials: Credentials) -> OAuthToken:
    """POST /oauth/token with grant_type client_credentials."""
    form = {
        "grant_type": "client_credentials",
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret.get_secret_value(),
    }
    began = time.perf_counter()
    try:
        response = http.post(TOKEN_PATH, json=form, headers={"Accept": "application/json"})
    except httpx.RequestError as exc:
        API_CALLS.labels("token", "retryable").observe(time.perf_counter() - began)
        # Fetching a token has no effect worth reconciling: always safe to repeat.
        raise TokenUnavailableError(f"token request failed: {type(exc).__name__}") from exc
    API_CALLS.labels("token", str(response.status_code)).observe(time.perf_counter() - began)
    if response.status_code == 200:
        try:
            token = OAuthToken.model_validate_json(response.content)
        except ValidationError as exc:
            raise TokenUnavailableError(
                "token endpoint answered 200 with an unreadable body", http_status=200
            ) from exc
        if not _B64TOKEN.fullmatch(token.access_token.get_secret_value()):
            # It could not be sent (a line break, a space), and an error that quoted the
            # header would carry it into logs.
            raise TokenUnavailableError(
                "token endpoint answered a token a Bearer header cannot carry (RFC 6750)",
                http_status=200,
            )
        return token
    raise _token_error(response)


def _token_error(response: httpx.Response) -> TokenUnavailableError:
    status = response.status_code
    refused = False
    try:
        body = OAuthErrorBody.model_validate_json(response.content)
        detail = body.error + (f" ({body.error_description})" if body.error_description else "")
        refused = body.error in _REFUSED
    except ValidationError:
        api_error = parse_api_error(response.content)
        detail = (
            api_error.error
            if api_error
            else describe_body(response.content, response.headers.get("content-type", ""))
        )
    return TokenUnavailableError(
        f"token endpoint answered {status}: {detail}",
        http_status=status,
        credentials_refused=refused,
        retry_after_s=parse_retry_after(response.headers.get("retry-after")),
    )


class MemoryTokenSource:
    """One token per process, cached until ``expires_in - margin_s``; thread-safe.

    The lock is held while a token is fetched, so it outlasts the fetch whatever the
    fetch takes: the other threads wait for that one token instead of fetching their own.
    """

    def __init__(
        self,
        fetch: Callable[[], OAuthToken],
        *,
        margin_s: float = 30.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._margin_s = margin_s
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._valid_until = 0.0
        self._failed_until = 0.0
        self._failure: TokenUnavailableError | None = None
        self.failures = 0  # consecutive failed fetches
        self.fetches = 0  # tokens fetched by this process (for tests and metrics)

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is not None and now < self._valid_until:
                return self._token
            if self._failure is not None and now < self._failed_until:
                raise _still_failing(self._failure, self._failed_until - now)
            try:
                fetched = self._fetch()
            except TokenUnavailableError as exc:
                TOKEN_FETCHES.labels("refused" if exc.credentials_refused else "failed").inc()
                self._failed(exc, now)
                raise
            TOKEN_FETCHES.labels("ok").inc()
            self.fetches += 1
            self.failures, self._failure = 0, None
            self._token = fetched.access_token.get_secret_value()
            lifetime = max(fetched.expires_in - self._margin_s, fetched.expires_in / 2)
            self._valid_until = self._clock() + lifetime
            return self._token

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None

    def _failed(self, exc: TokenUnavailableError, now: float) -> None:
        self.failures += 1
        wait_s = min(self._backoff_max_s, self._backoff_base_s * 2.0 ** (self.failures - 1))
        if exc.retry_after_s is not None:
            wait_s = max(wait_s, min(exc.retry_after_s, self._backoff_max_s))
        exc.retry_after_s = wait_s
        self._failure, self._failed_until = exc, now + wait_s


def _still_failing(failure: TokenUnavailableError, remaining_s: float) -> TokenUnavailableError:
    # A fresh exception per caller: one instance raised in many threads shares a traceback.
    return TokenUnavailableError(
        f"{failure.message} (not asked again for {remaining_s:.1f} s)",
        http_status=failure.http_status,
        credentials_refused=failure.credentials_refused,
        retry_after_s=remaining_s,
    )
