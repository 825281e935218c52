"""Bad-input corpus, the HTTP API: random JSON, wrong types, huge numbers, floats,
nested junk, non-UTF-8 bytes, long strings and odd Content-Types at POST /v1/card-loads
and POST /v1/batches. Never a 5xx; every 4xx an RFC 9457 problem document with a
``urn:cardload:problem:`` type; one Idempotency-Key never admits two jobs."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from cardload.api.services import Services
from cardload.apikeys import ApiKeyStore
from tests.api.conftest import Api, serve_api
from tests.support import make_settings, queued

CARD = "9276004424644352"
LOAD: dict[str, Any] = {"card_number": CARD, "amount_cents": 2000, "order_id": "A-1"}
PREFIX = "urn:cardload:problem:"
MAX_BODY = 4096


@pytest.fixture
def corpus_api(real_redis: redis.Redis, redis_url: str) -> Iterator[Api]:
    """As tests/api/conftest.py serves it: uvicorn in a thread on a real socket."""
    settings = make_settings(
        redis_url,
        "http://sandbox.test",
        api={"max_body_bytes": MAX_BODY, "max_batch_bytes": 20_000},
    )
    services = Services.from_settings(settings)
    store = ApiKeyStore(real_redis)
    keys = {"all": store.create("all", ["submit", "read", "operate"])[1]}
    with serve_api(services) as http:
        yield Api(http, services, settings, keys)


def assert_well_answered(answer: httpx.Response) -> None:
    """No 5xx (but a 503 of Redis, which these tests never stop); every 4xx a problem."""
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    if answer.status_code >= 400:
        assert answer.headers["content-type"] == "application/problem+json", answer.headers
        problem = answer.json()
        assert problem["type"].startswith(PREFIX), problem
        assert problem["status"] == answer.status_code and problem["title"]


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
ODD_VALUES = st.one_of(
    JSON,
    st.sampled_from(
        [10**30, -(10**30), 2**63, 0, -1, 20.0, 20.5, 1e308, "2000", True, "", "x" * 5000]
    ),
    st.sampled_from([CARD + " ", int(CARD), "9" * 3000, "9276 0044 2464 4352", "CRG_X", None]),
)
FIELDS = st.sampled_from(
    [
        "card_number",
        "card_group_id",
        "amount_cents",
        "currency",
        "description",
        "extra_lines",
        "customer_id",
        "customer_contact",
        "template_id",
        "payment_method",
        "order_id",
        "colour",
    ]
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["mutated", "mutated", "json", "bytes", "text"]))
    if kind == "mutated":
        body = dict(LOAD)
        for _ in range(draw(st.integers(1, 3))):
            field = draw(FIELDS)
            if draw(st.booleans()) and field in body:
                del body[field]
            else:
                body[field] = draw(ODD_VALUES)
        return json.dumps(body).encode()
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    if kind == "text":
        return draw(
            st.sampled_from(
                [
                    b'{"card_number": "' + CARD.encode() + b'", "amount_cents": NaN}',
                    b'{"amount_cents": Infinity}',
                    b'{"amount_cents": 1e999}',
                    b'{"amount_cents": ' + b"9" * 5000 + b"}",
                    b"[" * 5000,
                    b'{"card_number": "\xff\xfe", "amount_cents": 1}',
                    b'{"card_number": "\\ud800", "amount_cents": 1}',
                    b"",
                    b"x" * (MAX_BODY + 1),
                ]
            )
        )
    return draw(st.binary(max_size=200))


CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        "application/problem+json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
        "application/jsonl",
        "*/*",
    ]
)
KEYS = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "x" * 300, "a\tb", "order-💳", "o" * 255]),
    st.binary(min_size=1, max_size=20).filter(lambda b: b"\r" not in b and b"\n" not in b),
)


@given(bodies(), CONTENT_TYPES, KEYS, st.booleans())
def test_card_loads_never_5xx_and_always_a_problem(
    corpus_api: Api, body: bytes, media: str, key: str | bytes | None, auth: bool
) -> None:
    headers: dict[str, Any] = {"Content-Type": media} if media else {}
    if key is not None:
        headers["Idempotency-Key"] = key.encode() if isinstance(key, str) else key
    if auth:
        headers |= corpus_api.auth()
    try:
        answer = corpus_api.http.post("/v1/card-loads", content=body, headers=headers)
    except httpx.LocalProtocolError:
        return  # a header httpx will not send (h11 refuses it): nothing reached the API
    assert_well_answered(answer)
    if not auth:
        # FastAPI reads the body before the auth dependency runs: a body that is not
        # JSON is refused (422) before the missing key (401).
        assert answer.status_code in (400, 401, 413, 422), answer.text
        if answer.status_code == 422:
            assert answer.json()["errors"][0]["field"] == "body", answer.text
    if answer.status_code in (200, 202):
        assert answer.json()["job_id"] and answer.json()["status"]


_unique = itertools.count()


@st.composite
def same_key_requests(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Requests sharing one key: identical, or differing in amount or card."""
    variants = [
        LOAD,
        LOAD | {"amount_cents": 2500},
        LOAD | {"card_number": "9276000000000003"},
        {k: v for k, v in LOAD.items() if k != "order_id"},
        LOAD | {"amount_cents": "2000"},  # invalid: must admit nothing
    ]
    return draw(st.lists(st.sampled_from(variants), min_size=2, max_size=6))


@given(same_key_requests(), st.booleans())
def test_one_idempotency_key_never_admits_two_jobs(
    corpus_api: Api, requests: list[dict[str, Any]], at_once: bool
) -> None:
    key = f"corpus-{next(_unique)}"
    before = Counter(queued(corpus_api.services.redis))

    def send(body: dict[str, Any]) -> httpx.Response:
        headers = corpus_api.auth() | {"Idempotency-Key": key}
        return corpus_api.http.post("/v1/card-loads", json=body, headers=headers)

    if at_once:
        with ThreadPoolExecutor(len(requests)) as pool:
            answers = list(pool.map(send, requests))
    else:
        answers = [send(body) for body in requests]
    for answer in answers:
        assert_well_answered(answer)
        assert answer.status_code in (200, 202, 409, 422), answer.text
    created = [a for a in answers if a.status_code == 202]
    assert len(created) <= 1, "one key admitted two jobs"
    job_ids = {a.json()["job_id"] for a in answers if a.status_code in (200, 202)}
    [held] = corpus_api.services.store.job_ids_for_keys([key])
    assert job_ids <= {held}, (job_ids, held)
    assert (held is not None) == bool(created)
    # Every new message is the key's one job. (Requests at once may send its create
    # twice: a job admitted and not yet marked sent is sent again, by design, and the
    # workers' claim takes it once.)
    new = Counter(queued(corpus_api.services.redis)) - before
    for message in new:
        assert held is not None and held in json.loads(message)["headers"]["argsrepr"]
    assert bool(new) == bool(created)


BATCH_MEDIA = st.sampled_from(
    ["text/csv", "application/csv", "application/jsonl", "application/x-ndjson", "text/plain", ""]
)


@st.composite
def batch_bodies(draw: st.DrawFn) -> bytes:
    header = draw(
        st.sampled_from(
            [
                b"card_number,amount,currency,reference\n",
                "Kartennummer;Betrag;Währung;Referenz\n".encode("cp1252"),
                b"",
                b"\xef\xbb\xbfcard_number\tamount\n",
            ]
        )
    )
    rows = draw(
        st.lists(
            st.one_of(
                st.sampled_from(
                    [
                        CARD.encode() + b",20.00,EUR,r-1\n",
                        CARD.encode() + b";1.234,56;EUR;r-2\n",
                        b'{"card_number": "' + CARD.encode() + b'", "amount": "5.00"}\n',
                        b"\n",
                        b",,,\n",
                        b"9276,-1,EUR,r-3\n",
                    ]
                ),
                st.binary(max_size=40),
            ),
            max_size=8,
        )
    )
    return header + b"".join(rows)


@given(batch_bodies(), BATCH_MEDIA, st.sampled_from([None, "corpus-b", "bad name!", "x" * 101]))
def test_batches_never_5xx_and_always_a_problem(
    corpus_api: Api, body: bytes, media: str, name: str | None
) -> None:
    headers = corpus_api.auth() | ({"Content-Type": media} if media else {})
    params = {"name": name} if name is not None else {}
    answer = corpus_api.http.post("/v1/batches", content=body, headers=headers, params=params)
    assert_well_answered(answer)
    if answer.status_code == 202:
        result = answer.json()
        assert result["rows"] == result["enqueued"] + result["already_enqueued"] + len(
            result["invalid"]
        )
        assert CARD not in answer.text


def test_a_batch_row_with_a_null_amount_is_not_a_500(corpus_api: Api) -> None:
    body = b'{"card_number": "' + CARD.encode() + b'", "amount": null}\n'
    headers = corpus_api.auth() | {"Content-Type": "application/jsonl"}
    answer = corpus_api.http.post("/v1/batches", content=body, headers=headers)
    assert_well_answered(answer)
