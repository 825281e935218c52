"""Batch files: every invalid row named with its field and reason, valid rows kept."""

from __future__ import annotations

import pytest

from producers.batch import BatchFileError, batch_id_for, parse_batch

MAX = 50_000


def test_csv_rows_and_errors() -> None:
    content = (
        b"card_number,amount,currency,reference\n"
        b"9276004424644352,20.00,EUR,emp-1\n"
        b"9276 0000 0000 0004,12,,\n"
        b"92760044,20.00,EUR,emp-2\n"
        b"9276000000000003,10.005,EUR,x\n"
        b"9276000000000003,5,USD,y\n"
        b"9276000000000003,600,EUR,z\n"
        b"9276000000000003,5,EUR,a,extra\n"
    )
    batch_id, valid, invalid = parse_batch(content, "payroll.csv", MAX)
    assert batch_id == batch_id_for(content) and batch_id.startswith("batch_")
    assert [
        (p.row, p.job.card_number, p.job.amount_cents, p.job.idempotency_key) for p in valid
    ] == [
        (1, "9276004424644352", 2000, "ref:emp-1"),
        (2, "9276000000000004", 1200, f"{batch_id}:row:2"),
    ]
    assert valid[0].job.source.batch_id == batch_id and valid[0].job.source.row == 1
    assert [(e.row, e.field) for e in invalid] == [
        (3, "card_number"),
        (4, "amount"),
        (5, "currency"),
        (6, "amount"),
        (7, "line"),
    ]
    assert "fractions of a cent" in invalid[1].reason and "maximum" in invalid[3].reason


def test_jsonl_is_exact_and_reports_bad_lines() -> None:
    content = (
        b'{"card_number": "9276004424644352", "amount": 20.10, "reference": "r1"}\n'
        b'{"card_number": "9276004424644352", "amount": "7,50"}\n'
        b"not json\n"
        b"[1, 2]\n"
        b'{"card_number": "9276004424644352", "amount": 1, "colour": "red"}\n'
        b"\n"
    )
    _, valid, invalid = parse_batch(content, "orders.jsonl", MAX)
    assert [p.job.amount_cents for p in valid] == [2010, 750]
    assert [(e.row, e.field) for e in invalid] == [(3, "line"), (4, "line"), (5, "colour")]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("card,amount\n", "unknown columns: card; missing: card_number"),
        ("card_number,amount,ammount\n", "unknown columns: ammount"),
    ],
)
def test_bad_header_refuses_the_file(header: str, message: str) -> None:
    with pytest.raises(BatchFileError, match=message):
        parse_batch(header.encode(), "x.csv", MAX)
