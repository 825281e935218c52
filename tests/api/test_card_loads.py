"""``/v1/card-loads``: admission by Idempotency-Key, every auth failure, invalid bodies
named field by field, problem documents, and masked answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cardload.apikeys import ApiKeyStore
from cardload.jobs.model import JobStatus
from tests.api.conftest import Api
from tests.support import queued

CARD = "9276004424644352"
LOAD = {"card_number": CARD, "amount_cents": 2000, "order_id": "A-1"}


def post(api: Api, body: Any, key: str | None = "order-1", auth: str = "all") -> Any:
    headers = api.auth(auth) | ({"Idempotency-Key": key} if key is not None else {})
    return api.http.post("/v1/card-loads", json=body, headers=headers)


def test_a_load_is_accepted_once_per_key(api: Api) -> None:
    first = post(api, LOAD)
    assert first.status_code == 202, first.text
    job_id = first.json()["job_id"]
    assert first.json() == {"job_id": job_id, "status": "queued"}
    assert first.headers["location"] == f"/v1/card-loads/{job_id}"
    again = post(api, LOAD)
    assert again.status_code == 200 and again.json()["job_id"] == job_id
    assert again.headers["location"] == f"/v1/card-loads/{job_id}"
    assert len(queued(api.services.redis)) == 1  # one message: one load
    record = api.services.store.load(job_id)
    assert record is not None and record.status is JobStatus.QUEUED
    assert record.job.source.order_id == "A-1" and record.job.source.system == "api:all"


def test_the_same_key_with_another_body_is_a_conflict(api: Api) -> None:
    job_id = post(api, LOAD).json()["job_id"]
    answer = post(api, LOAD | {"amount_cents": 2500})
    assert answer.status_code == 409
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"] == "urn:cardload:problem:idempotency-conflict"
    assert job_id in problem["detail"] and problem["status"] == 409


def test_the_job_reads_back_masked(api: Api) -> None:
    job_id = post(api, LOAD).json()["job_id"]
    answer = api.http.get(f"/v1/card-loads/{job_id}", headers=api.auth("read"))
    assert answer.status_code == 200
    view = answer.json()
    assert view["status"] == "queued" and view["card_number"] == "927600******4352"
    assert view["amount_cents"] == 2000 and view["balances"] is None
    assert CARD not in answer.text
    missing = api.http.get("/v1/card-loads/" + "0" * 32, headers=api.auth("read"))
    assert missing.status_code == 404
    assert missing.json()["type"] == "urn:cardload:problem:not-found"


def test_an_invalid_body_names_every_field_and_echoes_nothing(api: Api) -> None:
    body = {
        "card_number": "9276-0044-2464-4352",
        "amount_cents": "20.00",
        "currency": "EUR",
        "colour": "red",
    }
    answer = post(api, body)
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["type"] == "urn:cardload:problem:invalid-request"
    fields = {e["field"] for e in problem["errors"]}
    assert {"card_number", "amount_cents", "colour"} <= fields
    assert "9276-0044" not in answer.text and "20.00" not in answer.text
    neither = post(api, {"amount_cents": 100})
    assert neither.status_code == 422
    assert "exactly one of card_number and card_group_id" in neither.text
    assert post(api, "not an object").status_code == 422
    broken = api.http.post(
        "/v1/card-loads",
        content=b'{"card_number": "9276',
        headers=api.auth() | {"Idempotency-Key": "k", "Content-Type": "application/json"},
    )
    assert broken.status_code == 422 and "9276" not in broken.text
    assert [e["field"] for e in broken.json()["errors"]] == ["body"]


def test_over_the_limit_and_an_unusable_method_are_invalid(api: Api) -> None:
    limit = api.settings.jobs.max_amount_cents
    over = post(api, LOAD | {"amount_cents": limit + 1})
    assert over.status_code == 422
    assert [e["field"] for e in over.json()["errors"]] == ["amount_cents"]
    method = post(api, LOAD | {"payment_method": "loyalty"}, key="order-2")
    assert method.status_code == 422
    assert [e["field"] for e in method.json()["errors"]] == ["payment_method"]
    assert queued(api.services.redis) == []


def test_the_idempotency_key_is_required_and_bounded(api: Api) -> None:
    missing = post(api, LOAD, key=None)
    assert missing.status_code == 400
    assert missing.json()["type"] == "urn:cardload:problem:idempotency-key-missing"
    long = post(api, LOAD, key="k" * 256)
    assert long.status_code == 422
    assert [e["field"] for e in long.json()["errors"]] == ["header.Idempotency-Key"]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer clk_000000000000_" + "A" * 43,
        "Bearer not-a-key",
    ],
)
def test_a_missing_or_wrong_key_is_401(api: Api, authorization: str | None) -> None:
    headers = {"Idempotency-Key": "k"} | ({"Authorization": authorization} if authorization else {})
    answer = api.http.post("/v1/card-loads", json=LOAD, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["type"] == "urn:cardload:problem:unauthorized"
    assert queued(api.services.redis) == []


def test_a_tampered_or_revoked_key_is_401_and_a_scope_missing_is_403(api: Api) -> None:
    key = api.keys["submit"]
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    answer = api.http.post(
        "/v1/card-loads",
        json=LOAD,
        headers={"Authorization": f"Bearer {tampered}", "Idempotency-Key": "k"},
    )
    assert answer.status_code == 401
    read = api.http.get("/v1/card-loads/" + "0" * 32, headers=api.auth("submit"))
    assert read.status_code == 403
    assert read.json()["type"] == "urn:cardload:problem:forbidden"
    assert post(api, LOAD, auth="read").status_code == 403
    assert api.http.get("/v1/dead-letters", headers=api.auth("read")).status_code == 403
    assert ApiKeyStore(api.services.redis).revoke("shop")
    assert post(api, LOAD, auth="submit").status_code == 401


def test_a_body_over_the_limit_is_413(api: Api) -> None:
    body = LOAD | {"description": "x" * 5000}
    answer = post(api, body)
    assert answer.status_code == 413
    assert answer.json()["type"] == "urn:cardload:problem:payload-too-large"
    chunked = api.http.post(
        "/v1/card-loads",
        content=iter([json.dumps(body).encode()]),  # no Content-Length: counted as read
        headers=api.auth() | {"Idempotency-Key": "k", "Content-Type": "application/json"},
    )
    assert chunked.status_code == 413


def test_health_and_readiness(api: Api) -> None:
    assert api.http.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = api.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": "ok", "broker": "ok"}


def test_nothing_sent_comes_back_in_a_problem(api: Api) -> None:
    unknown = post(api, LOAD | {CARD: 1})  # a card number as a field name
    assert unknown.status_code == 422 and CARD not in unknown.text
    path = api.http.get(f"/v1/card-loads/{CARD}", headers=api.auth("read"))
    assert path.status_code == 404 and CARD not in path.text
    huge = api.http.get("/v1/dead-letters", params={"offset": 2**63}, headers=api.auth())
    assert huge.status_code == 422
