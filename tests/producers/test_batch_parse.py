"""Batch files: every invalid row named with its field and reason, valid rows kept."""

from __future__ import annotations

import pytest

from cardload.producers.batch import BatchFileError, parse_batch

MAX = 50_000
SECRET = b"row-key-secret"


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
    batch_id, valid, invalid, *_ = parse_batch(
        content, "payroll.csv", MAX, batch_name="Pay-11", row_key_secret=SECRET
    )
    assert batch_id == "pay-11"
    assert [(p.row, p.job.card_number, p.job.amount_cents) for p in valid] == [
        (1, "9276004424644352", 2000),
        (2, "9276000000000004", 1200),
    ]
    assert valid[0].job.idempotency_key == "ref:emp-1"
    assert valid[1].job.idempotency_key.startswith("batch:pay-11:")
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
    _, valid, invalid, *_ = parse_batch(
        content, "orders.jsonl", MAX, batch_name="orders", row_key_secret=SECRET
    )
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


HEADER = "card_number,amount,currency,reference\n"
ROWS = [
    "9276000000000003,10.00,EUR,",
    "9276000000000003,10.00,EUR,",  # the same load twice, on purpose: two jobs
    "9276000000000004,12.50,EUR,",
    "9276004424644352,20.00,EUR,emp-1",
]


def keys_of(content: bytes, name: str | None = "gifts") -> dict[str, int]:
    valid = parse_batch(content, "x.csv", MAX, batch_name=name, row_key_secret=SECRET).valid
    return {p.job.idempotency_key: p.row for p in valid}


def test_a_row_is_identified_by_what_it_means_not_by_the_bytes() -> None:
    plain = keys_of((HEADER + "\n".join(ROWS) + "\n").encode())
    assert len(plain) == 4  # the two equal rows are the 1st and 2nd of their content
    crlf_bom = ("\ufeff" + HEADER + "\n".join(ROWS) + "\n").replace("\n", "\r\n")
    assert keys_of(crlf_bom.encode()).keys() == plain.keys()
    reordered = HEADER + "\n".join(reversed(ROWS)) + "\n"
    assert keys_of(reordered.encode()).keys() == plain.keys()
    # Fixing an invalid row adds its key and changes no other.
    broken = HEADER + "\n".join([*ROWS, "9276000000000003,abc,EUR,"]) + "\n"
    fixed = HEADER + "\n".join([*ROWS, "9276000000000003,7.00,EUR,"]) + "\n"
    before, after = keys_of(broken.encode()), keys_of(fixed.encode())
    assert before.keys() == plain.keys() and len(after.keys() - before.keys()) == 1
    # Another batch name is another batch: the same content is a new load there.
    assert not keys_of((HEADER + ROWS[0] + "\n").encode(), "gifts-2").keys() & plain.keys()


def test_rows_without_reference_need_a_batch_name() -> None:
    content = (HEADER + "\n".join(ROWS) + "\n").encode()
    batch_id, valid, invalid, *_ = parse_batch(content, "x.csv", MAX)
    assert [p.job.idempotency_key for p in valid] == ["ref:emp-1"]  # referenced rows go on
    assert [(e.row, e.field) for e in invalid] == [
        (1, "reference"),
        (2, "reference"),
        (3, "reference"),
    ]
    assert "--name" in invalid[0].reason
    # Without a name the batch id is the rows' meaning, not the file's bytes.
    crlf = content.replace(b"\n", b"\r\n")
    assert parse_batch(crlf, "x.csv", MAX)[0] == batch_id and batch_id.startswith("batch_")


def test_a_card_number_in_the_amount_column_is_not_echoed() -> None:
    content = (HEADER + "9276004424644352,9276 0000 0000 0004,EUR,swap-1\n").encode()
    [error] = parse_batch(content, "x.csv", MAX)[2]
    assert error.field == "amount" and "9276 00** **** 0004" in error.reason
    assert "0000 0000" not in error.reason


def test_a_reference_twice_in_one_file_is_refused() -> None:
    content = (HEADER + "9276000000000003,1,EUR,r1\n9276000000000004,2,EUR,r1\n").encode()
    _, valid, invalid, *_ = parse_batch(content, "x.csv", MAX)
    assert [p.row for p in valid] == [1]
    assert [(e.row, e.field, e.reason) for e in invalid] == [
        (2, "reference", "same reference as row 1")
    ]


@pytest.mark.parametrize("name", ["", "has space", "-lead", "x" * 101, "a/b"])
def test_batch_names_are_plain(name: str) -> None:
    with pytest.raises(BatchFileError, match="batch name"):
        parse_batch((HEADER + ROWS[0]).encode(), "x.csv", MAX, batch_name=name)


def test_a_row_key_does_not_give_the_card_number_away() -> None:
    """The key is shown beside the masked card (job, dead letters, events): its digest
    is an HMAC under a secret, so the six hidden digits cannot be tried one by one."""
    import hashlib
    import hmac

    card = "9276004424644352"
    content = (HEADER + f"{card},20.00,EUR,\n").encode()
    [row] = parse_batch(content, "x.csv", MAX, batch_name="gifts", row_key_secret=SECRET).valid
    _, name, digest, _ = row.job.idempotency_key.split(":")
    plain = [hashlib.sha256(f"{card}|2000|EUR".encode()).hexdigest()[:32]]
    plain.append(hashlib.sha256(f"{name}|{card}|2000|EUR".encode()).hexdigest()[:32])
    assert digest not in plain
    keyed = hmac.new(SECRET, f"{name}|{card}|2000|EUR".encode(), hashlib.sha256)
    assert digest == keyed.hexdigest()[:32]
    # Without the secret, rows without a reference are refused, not keyed guessably.
    _, valid, invalid, *_ = parse_batch(content, "x.csv", MAX, batch_name="gifts")
    assert valid == [] and "CARDLOAD_JOBS_ROW_KEY_SECRET" in invalid[0].reason
