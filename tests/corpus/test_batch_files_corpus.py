"""Bad-input corpus, batch files: generated CSV (English and German, ',' ';' tab) and
JSON Lines files in UTF-8 (with and without BOM), Windows-1252 and UTF-16, with missing
and extra cells, empty rows, odd amounts, duplicate references, long fields and random
bytes. Each row is either enqueued (once, however often the file is submitted) or
reported with its row, field and reason; the file as a whole only ever fails with
BatchFileError."""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from cardload.config import Settings
from cardload.jobs import JobStore
from cardload.producers.batch import parse_batch, submit_batch
from cardload.producers.batch_files import BatchFileError
from cardload.producers.enqueue import CardLoadProducer
from cardload.worker import create_app
from tests.support import make_settings, queued

MAX = 50_000
SECRET = b"corpus-secret"
CARD = "9276004424644352"
FULLWIDTH = "".join(chr(0xFF10 + int(d)) for d in CARD)
# Non-ASCII text whose Windows-1252 bytes are never valid UTF-8 (each >= 0xC0 and never
# followed by a continuation byte), so a Windows-1252 file is read back as written.
LATIN = "äöüßéÄ"
EN_NAMES = {"card_number": "card_number", "amount": "Amount", "currency": "currency"}
EN_NAMES["reference"] = "Reference"
DE_NAMES = {"card_number": "Kartennummer", "amount": "Betrag", "currency": "Währung"}
DE_NAMES["reference"] = "Referenz"

VALID_CARDS = [CARD, "9276 0044 2464 4353", "9276000000000003"]
INVALID_CARDS = ["", "927600442464435", "92760044246443521", "9276-0044-2464-4352", FULLWIDTH]
# Invalid under every reading: signs, zero, words, exponents, fractions of a cent,
# ambiguous thousands, over the maximum, non-ASCII digits.
INVALID_AMOUNTS = [
    "",
    "-1.00",
    "-5",
    "0",
    "0,00",
    "0.00",
    "abc",
    "1e3",
    "1,005",
    "20.001",
    "99999999",
    "NaN",
    "Infinity",
    "+5",
    "\u0663",
    "1 000",
    "12,3,4",
    "20,-",
    "9" * 400,
]


# --- the reference computation ------------------------------------------------------


def reference_cents(raw: str, german: bool) -> int | None:
    """What a person meant, computed apart from cardload with ample precision."""
    text = raw.strip()
    plain = text.replace(".", "").replace(",", ".") if german else text.replace(",", ".")
    with localcontext() as ctx:
        ctx.prec = 10_000
        try:
            value = Decimal(plain) * 100
        except InvalidOperation:
            return None
        if not value.is_finite() or value != value.to_integral_value():
            return None
        return int(value)


def valid_amount(cents: int, german: bool, draw: st.DrawFn) -> str:
    units, rest = divmod(cents, 100)
    sep = "," if german else draw(st.sampled_from([".", ","]))
    shapes = [f"{units}{sep}{rest:02d}"]
    if rest == 0:
        shapes.append(str(units))
    if rest % 10 == 0:
        shapes.append(f"{units}{sep}{rest // 10}")
    if german and units >= 1000:
        shapes.append(f"{units // 1000}.{units % 1000:03d},{rest:02d}")
    return draw(st.sampled_from(shapes))


# --- generated rows -----------------------------------------------------------------


@dataclass
class Expect:
    """A row as generated, and what must become of it."""

    row: int
    fields: dict[str, Any] | None  # None: an empty row (skipped, never reported)
    cents: int | None = None  # the amount it must load, if it is valid
    error: str | None = None  # else the field it must be refused for
    amount_known: bool = True  # False: a random amount, checked by reference_cents


REFERENCES = st.one_of(
    st.sampled_from(["", "pay-1", "pay-2", "7", " pay-1 ", "Prämie Müller", 'a;b,c\t"d"']),
    st.text(alphabet="abcxyz019-_ " + LATIN, min_size=1, max_size=12),
    st.integers(195, 260).map(lambda n: "r" * n),
)


@st.composite
def amounts(draw: st.DrawFn, german: bool) -> tuple[str, int | None, bool]:
    kind = draw(st.sampled_from(["valid", "valid", "invalid", "random"]))
    if kind == "valid":
        cents = draw(st.integers(1, MAX))
        return valid_amount(cents, german, draw), cents, True
    if kind == "invalid":
        return draw(st.sampled_from(INVALID_AMOUNTS)), None, True
    text = draw(st.text(alphabet="0123456789.,- e", max_size=12))
    return text, None, False


@st.composite
def row_fields(draw: st.DrawFn, german: bool) -> dict[str, Any]:
    amount, cents, known = draw(amounts(german))
    return {
        "card_number": draw(st.sampled_from(VALID_CARDS + INVALID_CARDS)),
        "amount": amount,
        "currency": draw(st.sampled_from(["", "EUR", "eur", "USD", "€"])),
        "reference": draw(REFERENCES),
        "_cents": cents,
        "_known": known,
    }


def amount_refused(expect: Expect, raw: str, german: bool) -> bool:
    fields = expect.fields or {}
    if expect.amount_known:
        return fields.get("_cents") is None
    return reference_cents(raw, german) is None


def cut_by_a_comma(fields: dict[str, Any], raw: str, columns: list[str]) -> bool:
    at = columns.index("amount")
    following = str(fields[columns[at + 1]]) if at + 1 < len(columns) else ""
    digits = raw.isascii() and raw.isdigit()
    return digits and following.isascii() and following.isdigit() and len(following) <= 2


def oracle(rows: list[Expect], german: bool, split_check: list[str] | None) -> None:
    """Fills in each row's fate as the README describes it. ``split_check``: the CSV
    columns in order when ',' separates them (an amount of digits followed by a column
    of one or two digits is refused: its cents may have been cut off)."""
    seen: set[str] = set()
    for expect in rows:
        f = expect.fields
        if f is None:
            continue
        card = str(f.get("card_number") or "").replace(" ", "")
        currency = str(f.get("currency") or "EUR").upper()
        reference = str(f.get("reference") or "").strip()
        raw_amount = str(f.get("amount", ""))
        expect.amount_known = bool(f.get("_known", True))
        cut = split_check is not None and cut_by_a_comma(f, raw_amount, split_check)
        if cut:
            expect.error = "amount"
        elif not (len(card) == 16 and card.isascii() and card.isdigit()):
            expect.error = "card_number"
        elif currency != "EUR":
            expect.error = "currency"
        elif len(reference) > 200:
            expect.error = "reference"
        elif amount_refused(expect, raw_amount, german):
            expect.error = "amount"
        elif reference and reference in seen:
            expect.error = "reference"
        else:
            cents = f.get("_cents")
            expect.cents = cents if isinstance(cents, int) else None
            # A random amount may still be refused (thousands, ranges): not decided here.
            expect.error = None if expect.amount_known else "amount?"
            if reference:
                seen.add(reference)


def quote_csv(value: str, delimiter: str) -> str:
    if any(c in value for c in (delimiter, '"', "\n", "\r")) or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, str, list[Expect]]:
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    optional = draw(st.lists(st.sampled_from(["currency", "reference"]), unique=True))
    columns = draw(st.permutations(["card_number", "amount", *optional]))
    names = [
        draw(st.sampled_from([EN_NAMES[c], DE_NAMES[c], EN_NAMES[c].upper()])) for c in columns
    ]
    german = delimiter == ";" or any(n in DE_NAMES.values() for n in names)
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [delimiter.join(names)]
    rows: list[Expect] = []
    for number in range(1, draw(st.integers(0, 12)) + 1):
        shape = draw(st.sampled_from(["full", "full", "full", "short", "extra", "blank"]))
        if shape == "blank":
            lines.append(draw(st.sampled_from(["", delimiter * len(columns), "  "])))
            rows.append(Expect(number, None))
            continue
        fields = draw(row_fields(german))
        cells = [quote_csv(str(fields[c]), delimiter) for c in columns]
        if shape == "short":
            keep = draw(st.integers(1, len(columns)))
            for c in columns[keep:]:
                fields[c] = ""
            fields.update({k: v for k, v in fields.items() if k in columns or k.startswith("_")})
            if "amount" in columns[keep:]:
                fields["_cents"], fields["_known"] = None, True
            cells = cells[:keep]
        visible = {k: (v.strip() if isinstance(v, str) else v) for k, v in fields.items()}
        for c in ("currency", "reference"):
            if c not in columns:
                visible[c] = ""
        if not any(str(visible[c]) for c in columns):
            visible = {}  # every cell blank: an empty row
        expect = Expect(number, visible or None)
        if shape == "extra":  # a cell past the header's columns: never an empty row
            cells.append(draw(st.sampled_from(["x", "1", "extra"])))
            expect.fields, expect.error = expect.fields or {}, "line"
        lines.append(delimiter.join(cells))
        rows.append(expect)
    oracle([r for r in rows if r.error != "line"], german, columns if delimiter == "," else None)
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    return encode(draw, text), "batch.csv", rows


@st.composite
def jsonl_files(draw: st.DrawFn) -> tuple[bytes, str, list[Expect]]:
    lines: list[str] = []
    rows: list[Expect] = []
    for number in range(1, draw(st.integers(0, 12)) + 1):
        shape = draw(st.sampled_from(["object"] * 4 + ["number", "blank", "junk", "extra"]))
        if shape == "blank":
            lines.append(draw(st.sampled_from(["", "   "])))
            rows.append(Expect(number, None))
            continue
        if shape == "junk":
            lines.append(draw(st.sampled_from(["[1, 2]", "42", '"x"', "{", "{'a': 1}", "null"])))
            rows.append(Expect(number, {}, error="line"))
            continue
        fields = draw(row_fields(False))
        if shape == "number":  # amounts as JSON numbers: major units
            cents = draw(st.integers(-100, MAX // 50))
            ok = 0 < cents <= MAX
            as_int = cents % 100 == 0 and draw(st.booleans())
            fields["amount"] = cents // 100 if as_int else Decimal(cents).scaleb(-2)
            fields["_cents"], fields["_known"] = (cents if ok else None), True
        if draw(st.booleans()):
            fields["currency"] = draw(st.sampled_from([None, " EUR", 0]))
        if draw(st.booleans()):
            fields["card_number"] = int(CARD)
        data = {k: v for k, v in fields.items() if not k.startswith("_")}
        if draw(st.booleans()):
            del data["reference"]
        if shape == "extra":
            data["colour"] = "red"
        lines.append(json.dumps(data, default=lambda d: json.loads(str(d)), ensure_ascii=False))
        expect = Expect(number, {**data, "_cents": fields["_cents"], "_known": fields["_known"]})
        if shape == "extra":
            expect.error = "colour"
        rows.append(expect)
    oracle([r for r in rows if r.error is None and r.fields], False, None)
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return encode(draw, newline.join(lines) + newline), "batch.jsonl", rows


def encode(draw: st.DrawFn, text: str) -> bytes:
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode("utf-8")


FILES = st.one_of(csv_files(), jsonl_files())


def check_parsed(content: bytes, name: str, rows: list[Expect]) -> None:
    result = parse_batch(content, name, MAX, batch_name="corpus", row_key_secret=SECRET)
    valid = {p.row: p.job.amount_cents for p in result.valid}
    invalid = {e.row: e for e in result.invalid}
    assert len(valid) == len(result.valid) and len(invalid) == len(result.invalid)
    assert not set(valid) & set(invalid), "a row both enqueued and refused"
    reported = set(valid) | set(invalid)
    assert reported == {r.row for r in rows if r.fields is not None}, "valid + invalid != rows"
    for expect in rows:
        if expect.fields is None:
            continue
        if expect.error == "amount?":  # a random amount: valid only as the reference says
            if expect.row in valid:
                raw = str(expect.fields["amount"])
                german = result.dialect.decimal == ","
                assert valid[expect.row] == reference_cents(raw, german), raw
                assert 0 < valid[expect.row] <= MAX
            else:
                assert invalid[expect.row].field in {"amount", "reference"}
            continue
        if expect.error is None:
            assert valid.get(expect.row) == expect.cents, (expect, invalid.get(expect.row))
        else:
            error = invalid.get(expect.row)
            assert error is not None, (expect, valid.get(expect.row))
            if expect.error != "reference" or error.field == "reference":
                assert error.field == expect.error, (expect, error)
            assert error.reason and CARD not in error.reason
    keys = [p.job.idempotency_key for p in result.valid]
    assert len(keys) == len(set(keys))


@given(FILES)
def test_every_row_is_enqueued_or_reported_with_its_field(
    file: tuple[bytes, str, list[Expect]],
) -> None:
    content, name, rows = file
    check_parsed(content, name, rows)


@st.composite
def damaged(draw: st.DrawFn) -> tuple[bytes, str]:
    content, name, _ = draw(FILES)
    how = draw(st.sampled_from(["insert", "truncate", "nul", "random", "bom"]))
    at = draw(st.integers(0, len(content)))
    if how == "insert":
        content = content[:at] + draw(st.binary(min_size=1, max_size=8)) + content[at:]
    elif how == "truncate":
        content = content[:at]
    elif how == "nul":
        content = content[:at] + b"\x00" + content[at:]
    elif how == "random":
        content = draw(st.binary(max_size=300))
    else:
        content = draw(st.sampled_from([codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE])) + content
    return content, name


@given(damaged())
def test_damaged_files_fail_only_with_batch_file_error(file: tuple[bytes, str]) -> None:
    content, name = file
    try:
        result = parse_batch(content, name, MAX, batch_name="corpus", row_key_secret=SECRET)
    except BatchFileError as exc:
        assert str(exc)
        return
    rows = [p.row for p in result.valid] + [e.row for e in result.invalid]
    assert len(rows) == len(set(rows)), "a row reported twice"
    assert all(0 < p.job.amount_cents <= MAX for p in result.valid)
    assert all(e.field and e.reason for e in result.invalid)


@pytest.mark.parametrize(
    "content",
    [
        b"card_number;amount;colour\n",  # an unknown column
        b"card_number,reference\n",  # no amount column
        b"Kartennummer;Betrag;Amount\n",  # a column named twice
        b"\n \n",
        b"",
        b"\x00card_number,amount\n",
        codecs.BOM_UTF16_LE + b"\x00\xd8",  # a lone surrogate
    ],
)
def test_files_that_cannot_be_read_are_refused_as_a_whole(content: bytes) -> None:
    with pytest.raises(BatchFileError):
        parse_batch(content, "x.csv", MAX, batch_name="corpus", row_key_secret=SECRET)


# --- submitted twice: each valid row enqueued exactly once ----------------------------


@pytest.fixture
def corpus_settings(redis_url: str) -> Settings:
    return make_settings(redis_url, "http://127.0.0.1:9", jobs={"max_amount_cents": MAX})


@given(FILES, st.booleans())
def test_a_file_submitted_twice_enqueues_each_valid_row_once(
    real_redis: redis.Redis,
    corpus_settings: Settings,
    tmp_path: Path,
    file: tuple[bytes, str, list[Expect]],
    named: bool,
) -> None:
    real_redis.flushall()
    producer = CardLoadProducer(create_app(corpus_settings), JobStore(real_redis), corpus_settings)
    content, name, _ = file
    path = tmp_path / name
    path.write_bytes(content)
    batch = "corpus-batch" if named else None
    try:
        first = submit_batch(producer, path, name=batch)
    except BatchFileError:
        return  # refused as a whole: nothing may have been enqueued
    finally:
        pass
    assert first.rows == first.enqueued + first.already_known + len(first.invalid)
    assert first.already_known == 0
    again = submit_batch(producer, path, name=batch)
    assert again.enqueued == 0
    assert again.already_known == first.enqueued
    assert again.rows == first.rows
    assert [(e.row, e.field) for e in again.invalid] == [(e.row, e.field) for e in first.invalid]
    assert len(queued(real_redis)) == first.enqueued


@given(st.sampled_from([b"{", b"card_number,amount\n1,"]))
def test_a_refused_file_enqueues_nothing(
    real_redis: redis.Redis, corpus_settings: Settings, tmp_path: Path, content: bytes
) -> None:
    real_redis.flushall()
    producer = CardLoadProducer(create_app(corpus_settings), JobStore(real_redis), corpus_settings)
    path = tmp_path / "bad.csv"
    path.write_bytes(b"\x00" + content)
    with pytest.raises(BatchFileError):
        submit_batch(producer, path, name="corpus-batch")
    assert queued(real_redis) == [] and real_redis.dbsize() == 0


# --- found by this corpus: minimal examples ------------------------------------------


def _jsonl(amount: str) -> bytes:
    return b'{"card_number": "' + CARD.encode() + b'", "amount": ' + amount.encode() + b"}\n"


@pytest.mark.parametrize(
    "line",
    [
        _jsonl("null"),
        _jsonl("[1]"),
        _jsonl('{"v": 1}'),
        _jsonl("NaN"),
        _jsonl("1e999999999"),
        _jsonl("9" * 5000),
        b'{"a":' * 100_000 + b"\n",
    ],
    ids=["null", "list", "object", "nan", "overflow", "long-int", "deep"],
)
def test_jsonl_amounts_of_any_type_are_row_errors(line: bytes) -> None:
    result = parse_batch(line, "x.jsonl", MAX, batch_name="corpus", row_key_secret=SECRET)
    assert [e.row for e in result.invalid] == [1]


def test_a_very_long_csv_field_is_a_row_error() -> None:
    """The csv module refuses a field past its size limit (the limit is the process's:
    not raised for us, it would change it for the host too); the row is reported, the
    next rows still go through."""
    long = b'9276004424644352,"' + b"1" * 140_000 + b'"\n'
    content = b"card_number,amount,reference\n" + long + b"9276004424644352,2.00,r2\n"
    result = parse_batch(content, "x.csv", MAX, batch_name="corpus", row_key_secret=SECRET)
    assert [(e.row, e.field) for e in result.invalid] == [(1, "line")]
    assert [p.job.amount_cents for p in result.valid] == [200]


def test_a_fraction_of_a_cent_beyond_28_digits_is_refused() -> None:
    content = b"card_number,amount\n9276004424644352,1.000000000000000000000000000001\n"
    result = parse_batch(content, "x.csv", MAX, batch_name="corpus", row_key_secret=SECRET)
    assert result.valid == [] and [e.field for e in result.invalid] == ["amount"]


def test_a_json_string_holding_a_line_separator_stays_one_row() -> None:
    data = {"card_number": CARD, "amount": "1.00", "reference": "a\u2028b"}
    content = json.dumps(data, ensure_ascii=False).encode() + b"\n"
    result = parse_batch(content, "x.jsonl", MAX, batch_name="corpus", row_key_secret=SECRET)
    assert [p.job.amount_cents for p in result.valid] == [100] and result.invalid == []
