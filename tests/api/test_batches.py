"""``/v1/batches``: a file streamed in, invalid rows named, valid ones enqueued once;
the counts and the report; uploads over the limit refused while they stream."""

from __future__ import annotations

import csv
import io

import httpx

from tests.api.conftest import Api
from tests.support import queued

CSV = (
    "card_number,amount,currency,reference\n"
    "9276004424644352,20.00,EUR,pay-1\n"
    "9276 0044 2464,5.00,EUR,pay-2\n"
    "9276004424644353,-1,EUR,pay-3\n"
    "9276004424644354,12.50,EUR,pay-4\n"
)


def upload(api: Api, body: bytes, media: str = "text/csv", **params: str) -> httpx.Response:
    headers = api.auth() | {"Content-Type": media}
    return api.http.post("/v1/batches", content=body, headers=headers, params=params)


def test_a_batch_enqueues_its_valid_rows_and_names_the_invalid(api: Api) -> None:
    answer = upload(api, CSV.encode(), name="payroll-2026-12")
    assert answer.status_code == 202, answer.text
    result = answer.json()
    assert result["batch_id"] == "payroll-2026-12"
    assert answer.headers["location"] == "/v1/batches/payroll-2026-12"
    assert (result["rows"], result["enqueued"], result["already_enqueued"]) == (4, 2, 0)
    assert [(e["row"], e["field"]) for e in result["invalid"]] == [
        (2, "card_number"),
        (3, "amount"),
    ]
    assert "9276 0044 2464" not in answer.text
    assert len(queued(api.services.redis)) == 2
    again = upload(api, CSV.encode(), name="payroll-2026-12").json()
    assert (again["enqueued"], again["already_enqueued"]) == (0, 2)
    assert len(queued(api.services.redis)) == 2

    status = api.http.get("/v1/batches/payroll-2026-12", headers=api.auth("read")).json()
    assert status["rows"] == 4 and status["invalid"] == 2
    assert status["by_status"] == {"queued": 2} and status["finished"] is False
    report = api.http.get("/v1/batches/payroll-2026-12/report.csv", headers=api.auth("read"))
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(report.text)))
    assert [line["outcome"] for line in lines] == ["queued", "invalid", "invalid", "queued"]
    assert lines[0]["card_number"] == "927600******4352"
    assert "9276004424644352" not in report.text


def test_json_lines_are_taken(api: Api) -> None:
    body = b'{"card_number": "9276004424644352", "amount": "20.00", "reference": "j-1"}\n'
    answer = upload(api, body, "application/jsonl")
    assert answer.status_code == 202, answer.text
    assert answer.json()["enqueued"] == 1


def test_a_file_too_large_a_wrong_type_and_a_bad_file_are_refused(api: Api) -> None:
    big = (CSV.splitlines()[0] + "\n").encode() + b"9276004424644352,1.00,EUR,r\n" * 1000
    answer = upload(api, big)
    assert answer.status_code == 413
    assert answer.json()["type"] == "urn:cardload:problem:payload-too-large"
    assert queued(api.services.redis) == []
    assert upload(api, CSV.encode(), "application/pdf").status_code == 415
    empty = upload(api, b"")
    assert empty.status_code == 422
    assert empty.json()["type"] == "urn:cardload:problem:invalid-batch-file"


def test_unknown_batches_and_scopes(api: Api) -> None:
    assert api.http.get("/v1/batches/nope", headers=api.auth("read")).status_code == 404
    assert api.http.get("/v1/batches/nope/report.csv", headers=api.auth()).status_code == 404
    assert upload(api, CSV.encode()).status_code == 202
    refused = api.http.post(
        "/v1/batches", content=CSV.encode(), headers=api.auth("read") | {"Content-Type": "text/csv"}
    )
    assert refused.status_code == 403
