"""The client against the in-process sandbox: typed calls, token handling, error tree."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cardload.sandbox import LOCKED_CARD, SEED_CARD, SandboxApp
from cardload.secuconnect import (
    AmbiguousError,
    CreateSmartTransaction,
    Credentials,
    MemoryTokenSource,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    SecuconnectClient,
    TokenUnavailableError,
    build_http,
    fetch_token,
)
from cardload.secuconnect.models import OAuthToken
from tests.support import CREDENTIALS, load_request, seed


def _request(card: str = SEED_CARD, cents: int = 1000, **extra: Any) -> CreateSmartTransaction:
    return CreateSmartTransaction.model_validate(load_request(card, cents, **extra))


def _faults(http: httpx.Client, *rules: dict[str, Any]) -> None:
    http.put("/_sandbox/faults", json={"rules": list(rules)}).raise_for_status()


def test_seed_case_through_the_client(client: SecuconnectClient) -> None:
    created = client.create(CreateSmartTransaction.model_validate(seed("01-create-request.json")))
    assert created.balances is not None and created.balances.total_cents == 220
    started = client.start(created.id, "cash")
    assert started.status == "ok"
    assert started.balances is not None
    assert (
        started.balances.cash_cents,
        started.balances.bonus_cents,
        started.balances.total_cents,
    ) == (2200, 810, 3010)
    assert client.get(created.id).status == "ok"


def test_one_token_for_many_calls(app: SandboxApp, client: SecuconnectClient) -> None:
    for _ in range(5):
        client.search()
    assert app.requests["token"] == 1


def test_expired_token_is_refreshed_once_and_the_call_repeated(
    app: SandboxApp, http: httpx.Client, client: SecuconnectClient
) -> None:
    client.search()
    http.post("/_sandbox/tokens/expire")
    tx = client.create(_request())
    assert tx.status == "created"
    assert app.requests["token"] == 2
    assert app.requests["create"] == 2  # the refused call, then the repeat
    assert len(app.world.transactions) == 1


class _StaleTokens:
    def __init__(self) -> None:
        self.invalidated = 0

    def token(self) -> str:
        return "stale-token-value"

    def invalidate(self, token: str) -> None:
        self.invalidated += 1


def test_a_second_refusal_is_permanent(app: SandboxApp, http: httpx.Client) -> None:
    tokens = _StaleTokens()
    with pytest.raises(PermanentError) as caught:
        SecuconnectClient(http, tokens).search()
    assert caught.value.http_status == 403
    assert caught.value.error_name == "ProductNotAllowedException"
    assert tokens.invalidated == 1 and app.requests["list"] == 2
    assert "stale-token-value" not in str(caught.value)


def test_wrong_credentials(http: httpx.Client) -> None:
    with pytest.raises(TokenUnavailableError, match="invalid_client") as caught:
        fetch_token(http, Credentials("sandbox-client", SecretStr("wrong-secret-xyz")))
    assert caught.value.credentials_refused and caught.value.http_status == 401
    assert "wrong-secret-xyz" not in str(caught.value)
    assert "wrong-secret-xyz" not in repr(Credentials("a", SecretStr("wrong-secret-xyz")))


def test_validation_error_is_permanent_with_details(client: SecuconnectClient) -> None:
    with pytest.raises(PermanentError) as caught:
        client.create(_request(card=LOCKED_CARD))
    error = caught.value
    assert (error.http_status, error.error_name) == (400, "ProductNotAllowedException")
    assert (
        error.api_error is not None
        and error.api_error.error_details == "idents[0].value: card 927600******0001 is locked"
    )
    assert error.support_id and len(error.support_id) == 32


def test_unknown_transaction(client: SecuconnectClient) -> None:
    with pytest.raises(NotFoundError):
        client.get("STX_" + "Q" * 30)


@pytest.mark.parametrize(
    ("rule", "call", "expected"),
    [
        # No status proves a POST was not processed: a gateway's 503 may follow a commit.
        ({"kind": "error_503", "endpoint": "create"}, "create", AmbiguousError),
        ({"kind": "error_503", "endpoint": "list"}, "list", RetryableError),
        (
            {"kind": "commit_then_lose", "endpoint": "create", "lose_as": "503"},
            "create",
            AmbiguousError,
        ),
        (
            {"kind": "commit_then_lose", "endpoint": "create", "lose_as": "408"},
            "create",
            AmbiguousError,
        ),
        ({"kind": "error_500", "endpoint": "create"}, "create", AmbiguousError),
        ({"kind": "error_502", "endpoint": "create"}, "create", AmbiguousError),
        ({"kind": "error_502", "endpoint": "list"}, "list", RetryableError),
        (
            {"kind": "rate_limit", "endpoint": "create", "retry_after_s": 4},
            "create",
            RateLimitedError,
        ),
        ({"kind": "reset", "endpoint": "create"}, "create", AmbiguousError),
        (
            {"kind": "commit_then_lose", "endpoint": "create", "lose_as": "timeout"},
            "create",
            AmbiguousError,
        ),
        ({"kind": "reset", "endpoint": "list"}, "list", RetryableError),
    ],
)
def test_faults_map_onto_the_error_tree(
    http: httpx.Client,
    client: SecuconnectClient,
    rule: dict[str, Any],
    call: str,
    expected: type[Exception],
) -> None:
    client.search()  # fetch the token before the fault is set
    _faults(http, rule)
    with pytest.raises(expected) as caught:
        client.create(_request()) if call == "create" else client.search()
    assert type(caught.value) is expected
    if isinstance(caught.value, RateLimitedError):
        assert caught.value.retry_after_s == 4.0


def test_lost_create_is_found_by_merchant_ref(
    app: SandboxApp, http: httpx.Client, client: SecuconnectClient
) -> None:
    client.search()
    _faults(http, {"kind": "commit_then_lose", "endpoint": "create", "times": 1})
    with pytest.raises(AmbiguousError):
        client.create(_request(merchantRef='job "42" / row 7'))
    client.create(_request(merchantRef="another job"))
    [found] = client.find_by_merchant_ref('job "42" / row 7')
    assert found.id in app.world.transactions
    assert found.merchant_ref == 'job "42" / row 7'
    assert client.find_by_merchant_ref("never created") == []


def test_unreadable_200_on_post_is_ambiguous() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 1200})
        return httpx.Response(200, content=b"<html>cached page</html>")

    with build_http("http://x", transport=httpx.MockTransport(handler)) as http:
        client = SecuconnectClient(http, MemoryTokenSource(lambda: fetch_token(http, CREDENTIALS)))
        with pytest.raises(AmbiguousError, match="not a SmartTransaction"):
            client.start("STX_" + "A" * 30, "cash")
        with pytest.raises(RetryableError, match="not a SmartTransaction"):
            client.get("STX_" + "A" * 30)


def test_memory_token_source_refreshes_before_expiry() -> None:
    now = [0.0]
    fetched: list[str] = []

    def fetch() -> OAuthToken:
        fetched.append(f"t{len(fetched)}")
        return OAuthToken.model_validate({"access_token": fetched[-1], "expires_in": 100})

    tokens = MemoryTokenSource(fetch, margin_s=30, clock=lambda: now[0])
    assert tokens.token() == "t0"
    now[0] = 69.0
    assert tokens.token() == "t0"
    now[0] = 70.0
    assert tokens.token() == "t1"
    tokens.invalidate("t0")  # an old token: keep the current one
    assert tokens.token() == "t1"
    tokens.invalidate("t1")
    assert tokens.token() == "t2"


def test_an_answer_that_cannot_be_decoded_is_classified() -> None:
    """A proxy that garbles a body (gzip that is not): for a POST it may have taken
    effect; for a GET or a token, it is repeated. Never an exception outside the tree."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-encoding": "gzip", "content-type": "application/json"},
            stream=httpx.ByteStream(b"{not gzip}"),
        )

    with build_http("http://x", transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(TokenUnavailableError, match="DecodingError"):
            fetch_token(http, CREDENTIALS)
        client = SecuconnectClient(http, _StaleTokens())
        with pytest.raises(AmbiguousError, match="DecodingError"):
            client.start("STX_" + "A" * 30, "cash")
        with pytest.raises(RetryableError, match="DecodingError"):
            client.get("STX_" + "A" * 30)


def test_a_merchant_ref_lookup_reads_every_page_and_keeps_exact_matches(
    app: SandboxApp, client: SecuconnectClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cardload.secuconnect import client as client_module

    for i in range(150):  # keys our wildcard key matches in the API's search
        client.create(_request(merchantRef=f"k-{i:03d}"))
    mine = client.create(_request(merchantRef="k-*"))
    found = client.find_by_merchant_ref("k-*")
    assert [tx.id for tx in found] == [mine.id]
    assert app.requests["list"] == 1  # "*" searched as "?": 3 characters, not any run
    found = client.find_by_merchant_ref("k-???")
    assert found == []  # 151 matches in the search, two pages read, none exactly
    assert app.requests["list"] == 3
    monkeypatch.setattr(client_module, "MAX_PAGES", 1)
    with pytest.raises(PermanentError, match="too many to look through"):
        client.find_by_merchant_ref("k-???")


def test_a_closed_client_sends_nothing(app: SandboxApp, client: SecuconnectClient) -> None:
    client.authenticate()  # the token is at hand: only the call itself could go out
    before = dict(app.requests)
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.get("STX_1")
    assert dict(app.requests) == before
