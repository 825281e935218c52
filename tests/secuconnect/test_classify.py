from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from cardload.secuconnect import (
    AmbiguousError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    SecuconnectError,
)
from cardload.secuconnect.classify import (
    classify_response,
    classify_transport_error,
    parse_retry_after,
)
from cardload.secuconnect.transport import RequestNotSent

API_ERROR = json.dumps(
    {
        "status": "error",
        "error": "ProductFormatException",
        "error_details": "basket_info.sum",
        "error_user": "x",
        "code": 2001,
        "supportId": "sup-1",
    }
).encode()
HTML = b"<html><body>502 Bad Gateway</body></html>"


@pytest.mark.parametrize(
    ("method", "status", "body", "expected"),
    [
        ("POST", 400, API_ERROR, PermanentError),
        ("GET", 404, API_ERROR, NotFoundError),
        ("POST", 429, API_ERROR, RateLimitedError),
        ("GET", 429, b"", RateLimitedError),
        ("POST", 500, API_ERROR, AmbiguousError),
        ("GET", 500, API_ERROR, RetryableError),
        ("POST", 502, HTML, AmbiguousError),
        ("GET", 502, HTML, RetryableError),
        # A gateway's 503 or 408 may follow a commit behind it: a POST is ambiguous.
        ("POST", 503, API_ERROR, AmbiguousError),
        ("GET", 503, API_ERROR, RetryableError),
        ("POST", 504, b"", AmbiguousError),
        ("POST", 408, b"", AmbiguousError),
        ("GET", 408, b"", RetryableError),
        ("POST", 425, b"", RetryableError),
        # Not the API's own refusal (no API error body): a firewall or proxy answered.
        ("POST", 422, HTML, AmbiguousError),
        ("POST", 403, HTML, AmbiguousError),
        ("GET", 403, HTML, RetryableError),
        ("GET", 404, b"", RetryableError),
        ("POST", 302, b"", RetryableError),
        ("GET", 301, HTML, RetryableError),
        # A final 1xx (interim answers are skipped): received, outcome unknown.
        ("POST", 101, b"", AmbiguousError),
        ("GET", 101, b"", RetryableError),
    ],
)
def test_response_table(
    method: str, status: int, body: bytes, expected: type[SecuconnectError]
) -> None:
    error = classify_response(
        method, status, body, "text/html" if body == HTML else "application/json"
    )
    assert type(error) is expected
    assert error.http_status == status


def test_api_error_details_are_kept() -> None:
    error = classify_response("POST", 400, API_ERROR)
    assert error.error_name == "ProductFormatException"
    assert error.support_id == "sup-1"
    assert error.api_error is not None and error.api_error.error_details == "basket_info.sum"
    assert "supportId=sup-1" in str(error)


def test_proxy_html_is_named() -> None:
    assert "HTML body" in str(classify_response("GET", 502, HTML, "text/html"))


@pytest.mark.parametrize(
    ("exc", "method", "expected"),
    [
        (httpx.ConnectError("refused"), "POST", RetryableError),
        (httpx.ConnectTimeout("slow"), "POST", RetryableError),
        (httpx.PoolTimeout("busy"), "POST", RetryableError),
        (httpx.ReadTimeout("lost"), "POST", AmbiguousError),
        (httpx.ReadError("reset"), "POST", AmbiguousError),
        (httpx.RemoteProtocolError("closed"), "POST", AmbiguousError),
        (httpx.ReadTimeout("lost"), "GET", RetryableError),
        (RequestNotSent("bad header"), "POST", RetryableError),
        (httpx.LocalProtocolError("after the headers"), "POST", AmbiguousError),
    ],
)
def test_transport_table(
    exc: httpx.TransportError, method: str, expected: type[SecuconnectError]
) -> None:
    assert type(classify_transport_error(method, exc)) is expected


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("99999") == 3600.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("²") is None  # a digit to str.isdigit, not to float()
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 -0000", now) == 30.0  # naive: UTC
    assert parse_retry_after(None) is None
    error = classify_response("GET", 429, b"", retry_after="3")
    assert isinstance(error, RateLimitedError) and error.retry_after_s == 3.0
