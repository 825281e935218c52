"""Pure decisions: which failure is which branch of the error tree.

Only POST calls can be ambiguous: a GET repeated is harmless, a POST whose response
was lost (timeout, reset, a garbled body) or answered by a 5xx, a 408, or a 4xx that is
not the API's own (no API error body: a firewall or proxy answered) may already have
taken effect. No status proves "not processed" for a POST: a gateway answers 503 or 408
when the API behind it is merely slow, and the API may still commit what it received.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from pydantic import ValidationError

from cardload.secuconnect.errors import (
    AmbiguousError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    SecuconnectError,
)
from cardload.secuconnect.models import ApiErrorBody
from cardload.secuconnect.transport import RequestNotSent

MAX_RETRY_AFTER_S = 3600.0
# 408 Request Timeout: a proxy gave up waiting, possibly after forwarding the request.
_MAYBE_PROCESSED_4XX = frozenset({408})
# 425 Too Early: refused before processing, by definition.
_RETRYABLE_4XX = frozenset({425})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²", which isdigit() accepts
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": a time in UTC from a source that will not say so
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def parse_api_error(body: bytes) -> ApiErrorBody | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("status") != "error" or "error" not in data:
        return None
    try:
        return ApiErrorBody.model_validate(data)
    except ValidationError:
        return None


def describe_body(body: bytes, content_type: str) -> str:
    if "html" in content_type or body.lstrip().startswith(b"<"):
        return "HTML body (a proxy answered, not the API)"
    if not body:
        return "empty body"
    return "unparseable body"


def classify_transport_error(method: str, exc: httpx.RequestError) -> SecuconnectError:
    """A request that got no usable HTTP response (none at all, or one that could not be
    decoded)."""
    name = type(exc).__name__
    if isinstance(
        exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | RequestNotSent
    ):
        return RetryableError(f"{method} not sent: {name}")
    if method == "POST":
        return AmbiguousError(f"{method} sent, response lost: {name}")
    return RetryableError(f"{method} failed: {name}")


def classify_response(
    method: str, status: int, body: bytes, content_type: str = "", retry_after: str | None = None
) -> SecuconnectError:
    """A response that is not a usable 2xx."""
    api_error = parse_api_error(body)
    what = api_error.error if api_error else describe_body(body, content_type)
    message = f"{method} answered {status}: {what}"
    if status == 429:
        return RateLimitedError(
            message, retry_after_s=parse_retry_after(retry_after), api_error=api_error
        )
    if 200 <= status < 400 or status in _RETRYABLE_4XX:
        # A redirect is not the API's answer (a gateway sending us elsewhere, a
        # maintenance page): nothing was processed where we sent it.
        return RetryableError(message, http_status=status, api_error=api_error)
    # A 4xx without the API's error body came from something in front of the API (a
    # firewall, a proxy): not the API's refusal, never a reason to give a job up.
    # A final 1xx (interim answers are skipped; 101 switches protocols): the request
    # was received, and what became of it is unknown.
    if status >= 500 or status < 200 or status in _MAYBE_PROCESSED_4XX or api_error is None:
        if method == "POST":
            return AmbiguousError(message, http_status=status, api_error=api_error)
        return RetryableError(message, http_status=status, api_error=api_error)
    if status == 404:
        return NotFoundError(message, http_status=status, api_error=api_error)
    return PermanentError(message, http_status=status, api_error=api_error)
