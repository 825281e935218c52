"""Reading batch files as operators export them: CSV with ``,`` (English spreadsheets),
with ``;`` and decimal commas (German ones: ``1.234,56``), or JSON Lines; UTF-8 with or
without a BOM, or Windows-1252; English or German column names.

The dialect is told from the header; what cannot be told is refused, never guessed.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from cardload.errors import CardloadError
from cardload.observability.masking import mask_text

COLUMNS = ("card_number", "amount", "currency", "reference")
REQUIRED = ("card_number", "amount")
# Column names as people write them (compared without case, accents, spaces, _ or -).
_NAMES = {
    "cardnumber": "card_number",
    "kartennummer": "card_number",
    "amount": "amount",
    "betrag": "amount",
    "currency": "currency",
    "wahrung": "currency",
    "waehrung": "currency",
    "reference": "reference",
    "referenz": "reference",
}
_GERMAN_NAMES = frozenset({"kartennummer", "betrag", "wahrung", "waehrung", "referenz"})
_DELIMITERS = (",", ";", "\t")
_CENTS = re.compile(r"^[0-9]{1,2}$")


class BatchFileError(CardloadError, ValueError):
    """The file as a whole cannot be read (encoding, format, header), or the batch name
    is invalid."""


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    reason: str


@dataclass(frozen=True)
class Dialect:
    name: Literal["en", "de", "jsonl"]
    delimiter: str | None  # None: JSON Lines
    decimal: Literal[".", ","] | None  # the amounts' decimal separator; None: either one

    def describe(self) -> str:
        if self.delimiter is None:
            return "JSON Lines"
        shown = "tab" if self.delimiter == "\t" else repr(self.delimiter)
        point = (
            "decimal comma, '.' for thousands"
            if self.decimal == ","
            else "decimal point or comma, no thousands separators"
        )
        return f"CSV, {shown}-separated, {point}"


JSON_LINES = Dialect("jsonl", None, None)
TEMPLATES = {
    "en": "card_number,amount,currency,reference\n",
    "de": "Kartennummer;Betrag;Währung;Referenz\n",
}


def decode(content: bytes) -> tuple[str, str]:
    """The text and the encoding it was read as: UTF-16 with its BOM (Excel's "Unicode
    text"), UTF-8 (a BOM is dropped), else Windows-1252 (as German Excel saves "CSV").
    Anything else is refused."""
    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return content.decode("utf-16"), "UTF-16"
        except UnicodeDecodeError as exc:
            raise BatchFileError(f"not UTF-16 text after its BOM (offset {exc.start})") from exc
    if b"\x00" in content:
        raise BatchFileError("not a text file (it holds NUL bytes)")
    try:
        return content.decode("utf-8-sig"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return content.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError as exc:
        raise BatchFileError(
            f"neither UTF-8 nor Windows-1252 text (byte 0x{content[exc.start]:02x} at "
            f"offset {exc.start})"
        ) from exc


def _plain(name: str) -> str:
    plain = unicodedata.normalize("NFKD", name.strip().lower())
    return "".join(c for c in plain if c.isalnum() and not unicodedata.combining(c))


def _column(name: str) -> str | None:
    return _NAMES.get(_plain(name))


def _dialect(header_line: str) -> Dialect:
    """The delimiter under which the header splits into the most known column names."""
    known = {}
    for delimiter in _DELIMITERS:
        try:
            names = next(csv.reader([header_line], delimiter=delimiter))
        except csv.Error as exc:
            raise BatchFileError(f"the header cannot be read as CSV ({exc})") from None
        known[delimiter] = (sum(1 for n in names if _column(n)), names)
    best = max(count for count, _ in known.values())
    winners = [d for d, (count, _) in known.items() if count == best]
    if best < 1 or len(winners) != 1:
        # A file without a header starts with a card number: masked.
        raise BatchFileError(
            f"cannot tell the columns from the header {mask_text(header_line.strip()[:80])!r}: "
            "write card_number,amount,currency,reference or "
            "Kartennummer;Betrag;Währung;Referenz (cardload batch template)"
        )
    delimiter = winners[0]
    names = known[delimiter][1]
    unknown = [n.strip() for n in names if n.strip() and not _column(n)]
    missing = [c for c in REQUIRED if c not in {_column(n) for n in names}]
    if unknown:
        raise BatchFileError(
            f"CSV header must be {','.join(COLUMNS)} (or German: "
            f"{TEMPLATES['de'].strip()}); unknown columns: {mask_text(', '.join(unknown))}"
            + (f"; missing: {', '.join(missing)}" if missing else "")
        )
    # German column names, or ";" (German spreadsheets' CSV), mean German amounts.
    german = delimiter == ";" or any(_plain(n) in _GERMAN_NAMES for n in names)
    return Dialect("de", delimiter, ",") if german else Dialect("en", delimiter, None)


def read_records(
    content: bytes, name: str
) -> tuple[Dialect, str, Iterator[tuple[int, dict[str, Any] | RowError]]]:
    """The file's dialect, its encoding, and (row number, fields) per data row (row 1
    is the first data row), the fields under the English column names."""
    text, encoding = decode(content)
    if name.endswith((".jsonl", ".ndjson")):
        return JSON_LINES, encoding, _json_lines(text)
    lines = text.splitlines()
    header_line = next((line for line in lines if line.strip()), "")
    if not header_line:
        raise BatchFileError("the file is empty")
    dialect = _dialect(header_line)
    return dialect, encoding, _csv_rows(text, dialect)


def _json_lines(text: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    # Lines end at \n only: str.splitlines() also breaks at U+2028 and others, which
    # JSON may hold raw inside a string.
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        try:
            data = json.loads(line, parse_float=Decimal)  # exact: 20.10 stays 20.10
        except json.JSONDecodeError as exc:
            yield number, RowError(number, "line", f"not JSON: {exc.msg}")
            continue
        except (ValueError, RecursionError):  # a number of 4,300+ digits; deep nesting
            yield number, RowError(number, "line", "not JSON this program can read")
            continue
        yield (
            number,
            data if isinstance(data, dict) else RowError(number, "line", "not a JSON object"),
        )


def _read(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str] | csv.Error]]:
    """The rows after the header, numbered; a row the csv module refuses (a field past
    its size limit) as its error: the reader goes on with the next line."""
    number = 0
    while True:
        number += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield number, exc
            continue
        yield number, row


def _csv_rows(text: str, dialect: Dialect) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    assert dialect.delimiter is not None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=dialect.delimiter)
    try:
        header = next(row for row in reader if any(cell.strip() for cell in row))
    except csv.Error as exc:
        raise BatchFileError(f"the header cannot be read as CSV ({exc})") from None
    columns = [_column(name) for name in header]
    missing = [c for c in REQUIRED if c not in columns]
    twice = sorted({c for c in columns if c and columns.count(c) > 1})
    if missing or twice:
        raise BatchFileError(
            f"CSV header must have {', '.join(REQUIRED)}"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; named twice: {', '.join(twice)}" if twice else "")
        )
    for number, row in _read(reader):
        if isinstance(row, csv.Error):
            yield number, RowError(number, "line", f"cannot be read as CSV ({row})")
            continue
        if not any(cell.strip() for cell in row):
            continue  # an empty row (spreadsheets write them at the end)
        if len(row) > len(header):
            yield number, RowError(number, "line", "more fields than columns in the header")
            continue
        values = [cell.strip() for cell in row] + [""] * (len(header) - len(row))
        if dialect.delimiter == "," and _split_by_decimal_comma(columns, values):
            reason = 'looks cut in two by a decimal comma: write 20.50, or quote it ("20,50")'
            yield number, RowError(number, "amount", reason)
            continue
        yield number, {c: v for c, v in zip(columns, values, strict=True) if c}


def _split_by_decimal_comma(columns: list[str | None], values: list[str]) -> bool:
    """``9276…,20,50,ref`` in a comma-separated file: the amount's cents landed in the
    next column (a reference "50" would be read, and 20.00 loaded)."""
    at = columns.index("amount")
    following = values[at + 1] if at + 1 < len(values) else ""
    return values[at].isascii() and values[at].isdigit() and _CENTS.match(following) is not None
