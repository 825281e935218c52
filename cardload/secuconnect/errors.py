"""One error tree for everything a secuconnect call can end in.

    SecuconnectError              any failed call; carries HTTP status, API error, supportId
    ├── RetryableError            nothing took effect; repeating is safe
    │   ├── RateLimitedError      429, with the server's Retry-After
    │   ├── TokenUnavailableError no access token: the token endpoint failed, or refused
    │   │                         the credentials; the job waits, it is never dead-lettered
    │   └── CallHeldError         not sent: the shared circuit breaker is open, or the
    │                             shared rate limit would wait too long; the job waits
    ├── AmbiguousError            the request may have taken effect (lost response, 5xx
    │                             or 408 on a POST): reconcile by reading before repeating
    └── PermanentError            the API refused; repeating cannot help
        ├── NotFoundError         404: no such object
        └── KeyConflictError      the API holds the job's merchantRef for other content

httpx exceptions are translated into this tree once, in :mod:`secuconnect.client`;
nothing else catches httpx errors. Messages never contain tokens or secrets.
"""

from __future__ import annotations

from cardload.errors import CardloadError
from cardload.secuconnect.models import ApiErrorBody


class SecuconnectError(CardloadError):
    """Base of all secuconnect call failures."""

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        api_error: ApiErrorBody | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.api_error = api_error

    @property
    def error_name(self) -> str | None:
        return self.api_error.error if self.api_error else None

    @property
    def support_id(self) -> str | None:
        return self.api_error.support_id if self.api_error else None

    def __str__(self) -> str:
        parts = [self.message]
        if self.http_status is not None:
            parts.append(f"http_status={self.http_status}")
        if self.error_name:
            parts.append(f"error={self.error_name}")
        if self.support_id:
            parts.append(f"supportId={self.support_id}")
        return " ".join(parts)


class RetryableError(SecuconnectError):
    kind = "retryable"


class RateLimitedError(RetryableError):
    kind = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None,
        http_status: int | None = 429,
        api_error: ApiErrorBody | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, api_error=api_error)
        self.retry_after_s = retry_after_s


class TokenUnavailableError(RetryableError):
    """No token to call with. ``credentials_refused`` when the token endpoint itself said
    the client id or secret is wrong (a configuration problem, not the job's)."""

    kind = "token_unavailable"

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        credentials_refused: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status)
        self.credentials_refused = credentials_refused
        self.retry_after_s = retry_after_s


class CallHeldError(RetryableError):
    """The call was never sent: every worker holds its calls back (the API failed for
    all of them, or refused our credentials), or the shared rate limit would keep it
    waiting too long. Like a missing token, a reason for the job to wait, never to
    spend an attempt or be dead-lettered."""

    kind = "held"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AmbiguousError(SecuconnectError):
    kind = "ambiguous"


class PermanentError(SecuconnectError):
    kind = "permanent"


class NotFoundError(PermanentError):
    kind = "not_found"


class KeyConflictError(PermanentError):
    """A transaction with the job's idempotency key (``merchantRef``) exists, for another
    card or amount: never adopted, never a reason to create a second one."""

    kind = "conflict"
