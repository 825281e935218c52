"""Bad-input corpus, secuconnect answers: HTML pages, truncated JSON, wrong types,
unknown statuses, missing balances, huge and random bodies, broken encodings, on create,
get and start. The client raises only its own error tree, never echoes a secret from the
body, and tells a POST whose answer cannot be read (ambiguous) from a GET's (retryable)."""

from __future__ import annotations

import functools
import json
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cardload.sandbox import SEED_CARD, SandboxApp, SandboxTransport
from cardload.secuconnect import (
    AmbiguousError,
    CreateSmartTransaction,
    RetryableError,
    SecuconnectClient,
    SmartTransaction,
    build_http,
    fetch_token,
)
from cardload.secuconnect.errors import SecuconnectError
from tests.support import CREDENTIALS, load_request

SECRET = "tok_live_s3cr3t_do_not_echo"
TOKEN = "bearer-of-this-test"


class FixedToken:
    def token(self) -> str:
        return TOKEN

    def invalidate(self, token: str) -> None:
        pass


@functools.cache
def real_transaction() -> dict[str, Any]:
    """A Smart Transaction as the sandbox answers a create."""
    app = SandboxApp()
    with build_http("http://sandbox.test", transport=SandboxTransport(app)) as http:
        token = fetch_token(http, CREDENTIALS).access_token.get_secret_value()
        answer = http.post(
            "/api/v2/Smart/Transactions",
            json=load_request(SEED_CARD, 1000, merchantRef="corpus-1"),
            headers={"Authorization": f"Bearer {token}"},
        )
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data


def readable(content: bytes) -> bool:
    """Whether the model takes this body as the transaction asked for."""
    try:
        tx = SmartTransaction.model_validate_json(content)
    except ValidationError:
        return False
    return tx.id == real_transaction()["id"] and tx.merchant_ref in (None, "corpus-1")


def request() -> CreateSmartTransaction:
    return CreateSmartTransaction.model_validate(
        load_request(SEED_CARD, 1000, merchantRef="corpus-1")
    )


JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, bool]:  # noqa: C901, PLR0911 - one case per kind
    """A body, and whether it is a readable transaction (``id`` and all) if 2xx."""
    tx = real_transaction()
    kind = draw(
        st.sampled_from(
            [
                "valid",
                "unknown_status",
                "no_balances",
                "wrong_type",
                "truncated",
                "html",
                "api_error",
                "junk",
                "random",
                "huge",
                "empty",
                "secret_field",
            ]
        )
    )
    if kind == "valid":
        return json.dumps(tx).encode(), True
    if kind == "unknown_status":
        status = draw(st.sampled_from(["weird", "", "OK", "ok ", SECRET]))
        return json.dumps(tx | {"status": status}).encode(), True
    if kind == "no_balances":
        idents = [{k: v for k, v in i.items() if k != "merchantcard"} for i in tx["idents"]]
        return json.dumps(tx | {"idents": idents}).encode(), True
    if kind == "secret_field":  # an unknown field (kept) holding a secret
        return json.dumps(tx | {"access_token": SECRET, "note": SECRET}).encode(), True
    if kind == "wrong_type":
        field = draw(st.sampled_from(["id", "status", "idents", "basket", "created"]))
        value = draw(st.one_of(JUNK, st.just(SECRET), st.just(20.5)))
        content = json.dumps(tx | {field: value}).encode()
        return content, readable(content)
    if kind == "truncated":
        text = json.dumps(tx | {"note": SECRET}).encode()
        return text[: draw(st.integers(0, len(text) - 1))], False
    if kind == "html":
        return f"<html><body>502 Bad Gateway {SECRET}</body></html>".encode(), False
    if kind == "api_error":
        body = {
            "status": "error",
            "error": draw(st.sampled_from(["ProductNotFoundException", "X", ""])),
            "error_details": f"token {SECRET} and card {SEED_CARD}",
            "error_user": SECRET,
            "code": draw(st.one_of(st.integers(), st.text(max_size=4), st.none())),
        }
        return json.dumps(body).encode(), False
    if kind == "junk":
        return json.dumps(draw(JUNK)).encode(), False
    if kind == "random":
        return draw(st.binary(max_size=100)) + SECRET.encode(), False
    if kind == "huge":
        return b'{"note": "' + SECRET.encode() * 40_000 + b'"', False
    return b"", False


STATUSES = st.sampled_from(
    [
        200,
        200,
        200,
        201,
        204,
        301,
        400,
        401,
        403,
        404,
        408,
        409,
        422,
        425,
        429,
        500,
        502,
        503,
        504,
        599,
    ]
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "text/html", "", "application/json; charset=latin-1", "text/plain"]
)


@given(
    st.sampled_from(["create", "get", "start"]),
    STATUSES,
    bodies(),
    CONTENT_TYPES,
    st.sampled_from([None, "gzip", "br", "identity"]),
    st.sampled_from([None, "5", "soon", SECRET, "Wed, 21 Oct 2015 07:28:00 GMT"]),
)
def test_any_answer_is_one_of_the_clients_own_errors(
    operation: str,
    status: int,
    body: tuple[bytes, bool],
    media: str,
    encoding: str | None,
    retry_after: str | None,
) -> None:
    content, readable = body
    headers = {"Content-Type": media} if media else {}
    if encoding:
        headers["Content-Encoding"] = encoding  # the body is not encoded: undecodable
    if retry_after:
        headers["Retry-After"] = retry_after

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, content=content)

    tx_id = real_transaction()["id"]
    with build_http("http://api.test", transport=httpx.MockTransport(answer)) as http:
        client = SecuconnectClient(http, FixedToken())
        try:
            if operation == "create":
                result = client.create(request())
            elif operation == "get":
                result = client.get(tx_id)
            else:
                result = client.start(tx_id, "cash")
        except SecuconnectError as exc:
            assert SECRET not in str(exc) and SECRET not in repr(exc.args)
            assert SEED_CARD not in str(exc)
            post = operation != "get"
            if isinstance(exc, AmbiguousError):
                assert post, "a GET is never ambiguous"
            unreadable = 200 <= status < 300 and (
                not readable or (encoding in ("gzip", "br") and bool(content))
            )
            if unreadable:
                assert isinstance(exc, AmbiguousError if post else RetryableError), exc
            if status >= 500 and post:
                assert isinstance(exc, AmbiguousError), exc
            return
        assert 200 <= status < 300 and readable, "a transaction taken from a failure"
        assert isinstance(result, SmartTransaction) and result.id == tx_id
        assert SECRET not in str(result.status) or result.status == SECRET


@pytest.mark.parametrize("operation", ["create", "get", "start"])
@pytest.mark.parametrize(
    "error",
    [httpx.ReadTimeout("t"), httpx.RemoteProtocolError("p"), httpx.ReadError("r")],
    ids=["timeout", "protocol", "read"],
)
def test_an_answer_lost_on_the_way(operation: str, error: httpx.RequestError) -> None:
    def lose(request: httpx.Request) -> httpx.Response:
        raise error

    tx_id = real_transaction()["id"]
    with build_http("http://api.test", transport=httpx.MockTransport(lose)) as http:
        client = SecuconnectClient(http, FixedToken())
        expected = RetryableError if operation == "get" else AmbiguousError
        with pytest.raises(expected):
            if operation == "create":
                client.create(request())
            elif operation == "get":
                client.get(tx_id)
            else:
                client.start(tx_id, "cash")
