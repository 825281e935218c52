"""The token endpoint failing in every way a gateway or the API can: always
``TokenUnavailableError`` (retry, never dead-letter), asked again only after a backoff,
and never a secret in a message."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from cardload.secuconnect import Credentials, MemoryTokenSource, TokenUnavailableError, build_http
from cardload.secuconnect.models import OAuthToken
from cardload.secuconnect.tokens import fetch_token

SECRET = "s3cr3t-value"
CREDENTIALS = Credentials("client", SecretStr(SECRET))


def fetch_with(response: httpx.Response | Exception) -> TokenUnavailableError:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(response, Exception):
            raise response
        return response

    with (
        build_http("http://x", transport=httpx.MockTransport(handler)) as http,
        pytest.raises(TokenUnavailableError) as caught,
    ):
        fetch_token(http, CREDENTIALS)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value.__cause__)
    return caught.value


@pytest.mark.parametrize(
    ("response", "words", "refused"),
    [
        (httpx.Response(400, json={"error": "invalid_client"}), "invalid_client", True),
        (httpx.Response(401, json={"error": "unauthorized_client"}), "unauthorized_client", True),
        (httpx.Response(400, json={"error": "invalid_request"}), "invalid_request", False),
        (
            httpx.Response(403, html="<html><h1>403 Forbidden</h1></html>"),
            "HTML body",
            False,
        ),
        (httpx.Response(502, html="<html>502 Bad Gateway</html>"), "HTML body", False),
        (
            httpx.Response(
                503, json={"status": "error", "error": "ProductInternalException", "code": 2004}
            ),
            "ProductInternalException",
            False,
        ),
        (httpx.Response(200, content=b"<html>cached</html>"), "unreadable body", False),
        (httpx.ConnectError("refused"), "ConnectError", False),
        (httpx.ReadTimeout("slow"), "ReadTimeout", False),
    ],
)
def test_every_failure_is_a_wait_not_a_refusal(
    response: httpx.Response | Exception, words: str, refused: bool
) -> None:
    error = fetch_with(response)
    assert words in error.message
    assert error.credentials_refused is refused


def test_a_token_answer_we_cannot_read_does_not_quote_the_token() -> None:
    error = fetch_with(httpx.Response(200, json={"access_token": "LIVE-TOKEN-VALUE-123"}))
    chain = f"{error!r} {error.__cause__!r} {error.__cause__}"
    assert "unreadable body" in error.message and "LIVE-TOKEN" not in chain


def test_retry_after_is_kept() -> None:
    error = fetch_with(httpx.Response(429, headers={"Retry-After": "7"}, json={}))
    assert error.retry_after_s == 7.0


def test_a_failed_fetch_is_not_repeated_until_the_backoff_passed() -> None:
    now = [0.0]
    answers: list[OAuthToken | TokenUnavailableError] = [
        TokenUnavailableError("down"),
        TokenUnavailableError("down"),
        OAuthToken.model_validate({"access_token": "t1", "expires_in": 100}),
    ]
    calls: list[float] = []

    def fetch() -> OAuthToken:
        calls.append(now[0])
        answer = answers.pop(0)
        if isinstance(answer, TokenUnavailableError):
            raise answer
        return answer

    tokens = MemoryTokenSource(fetch, backoff_base_s=1.0, backoff_max_s=60, clock=lambda: now[0])
    with pytest.raises(TokenUnavailableError):
        tokens.token()
    now[0] = 0.5
    with pytest.raises(TokenUnavailableError, match=r"not asked again for 0\.5 s") as waiting:
        tokens.token()
    assert waiting.value.retry_after_s == 0.5
    now[0] = 1.0
    with pytest.raises(TokenUnavailableError):
        tokens.token()  # the second failure: 2 s of quiet now
    now[0] = 2.9
    with pytest.raises(TokenUnavailableError, match="not asked again"):
        tokens.token()
    now[0] = 3.0
    assert tokens.token() == "t1"
    assert calls == [0.0, 1.0, 3.0] and tokens.failures == 0 and tokens.fetches == 1


@pytest.mark.parametrize("token", ["tok-0123\n", "tok 0123", "tok\r\nX-Evil: 1", "töken"])
def test_a_token_a_bearer_header_cannot_carry_is_refused_unquoted(token: str) -> None:
    error = fetch_with(httpx.Response(200, json={"access_token": token, "expires_in": 600}))
    assert "RFC 6750" in str(error)
    assert "tok" not in str(error).replace("token", "") and error.__cause__ is None
