"""What every secuconnect call of a worker passes through: the shared circuit breaker,
then the shared rate limit (and a 429's pause); afterwards the breaker learns how the
call ended. The client's :class:`~cardload.secuconnect.CallGate`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import redis

from cardload.config import Settings
from cardload.flowcontrol.breaker import SharedBreaker
from cardload.flowcontrol.rate_limit import SharedRateLimit
from cardload.observability import get_logger
from cardload.secuconnect import (
    CallHeldError,
    RetryableError,
    SecuconnectError,
    TokenUnavailableError,
)
from cardload.secuconnect.classify import parse_retry_after
from cardload.secuconnect.errors import AmbiguousError
from cardload.secuconnect.models import OAuthToken

log = get_logger(__name__)

_DEFAULT_429_PAUSE_S = 1.0  # a 429 without a Retry-After we can read


class ApiGate:
    """Thread-safe; one per worker process."""

    def __init__(self, breaker: SharedBreaker, limit: SharedRateLimit) -> None:
        self.breaker = breaker
        self.limit = limit

    def held_for(self) -> float:
        """Seconds before calls may go, as this process last saw the breaker: a step
        asks before it claims its job, so waiting costs the job no attempt."""
        return self.breaker.open_for()

    def enter(self, endpoint: str) -> object:
        go, wait_s, probe = self.breaker.admit()
        if not go:
            raise CallHeldError(
                f"calls to the API are held: its circuit breaker is open "
                f"({self.breaker.reason() or 'failing'}), next probe in {wait_s:.1f} s",
                retry_after_s=wait_s,
            )
        try:
            return self.limit.wait(self.breaker.paused_for())
        except BaseException:
            if probe:  # not sent: let another probe now, not after the probe's lease
                with contextlib.suppress(redis.RedisError):
                    self.breaker.unprobe()
            raise

    def leave(
        self,
        ticket: object,
        status: int | None,
        error: SecuconnectError | None,
        retry_after: str | None,
    ) -> None:
        try:
            self.limit.leave(ticket if isinstance(ticket, str) else None)
            self._judge(status, error, retry_after)
        except redis.RedisError as exc:  # the call's own outcome matters more than this
            log.warning("flowcontrol.unrecorded", error=str(exc))

    def fetch_token(self, fetch: Callable[[], OAuthToken]) -> OAuthToken:
        """``fetch`` through the gate: held while the breaker is open; credentials the
        token endpoint refuses open it at once (every worker stops, none dead-letters)."""
        try:
            ticket = self.enter("token")
        except CallHeldError as exc:
            raise TokenUnavailableError(exc.message, retry_after_s=exc.retry_after_s) from exc
        try:
            token = fetch()
        except TokenUnavailableError as exc:
            self._token_failed(ticket, exc)
            raise
        except BaseException:
            self.leave(ticket, None, None, None)  # ours (a bug), not the API's: place back
            raise
        self.leave(ticket, 200, None, None)
        return token

    def _token_failed(self, ticket: object, exc: TokenUnavailableError) -> None:
        try:
            self.limit.leave(ticket if isinstance(ticket, str) else None)
            if exc.http_status == 429:
                self.breaker.pause(exc.retry_after_s or _DEFAULT_429_PAUSE_S)
            elif exc.credentials_refused:
                self.breaker.failed("credentials_refused", at_once=True)
            else:
                self.breaker.failed("token_endpoint")
        except redis.RedisError as error:  # the token's failure is what the caller needs
            log.warning("flowcontrol.unrecorded", error=str(error))

    def _judge(
        self, status: int | None, error: SecuconnectError | None, retry_after: str | None
    ) -> None:
        if status == 429:
            # The API is there, and asks everyone to slow down.
            self.breaker.pause(parse_retry_after(retry_after) or _DEFAULT_429_PAUSE_S)
        elif status is not None:
            if status >= 500 or status == 408:
                self.breaker.failed("server_error")
            else:
                self.breaker.succeeded()  # 2xx, or a refusal: the API answers
        elif isinstance(error, RetryableError | AmbiguousError) and not isinstance(
            error, CallHeldError
        ):
            self.breaker.failed("no_answer")


def api_gate(client: redis.Redis, settings: Settings) -> ApiGate:
    secu = settings.secuconnect
    # A place in flight is held no longer than a call can take.
    lease_s = secu.connect_timeout_s + secu.write_timeout_s + secu.read_timeout_s + 5
    return ApiGate(
        SharedBreaker(client, settings.breaker),
        SharedRateLimit(client, settings.rate_limit, lease_s),
    )
