"""Batch files as operators export them: German and English CSV, JSON Lines, UTF-8 with
and without BOM, Windows-1252; what cannot be told apart is refused, named."""

from __future__ import annotations

import pytest

from cardload.producers.batch import parse_batch
from cardload.producers.batch_files import TEMPLATES, BatchFileError

MAX = 1_000_000
SECRET = b"secret"
GERMAN = "Kartennummer;Betrag;Währung;Referenz\r\n"


def parse(
    text: str | bytes, name: str = "x.csv"
) -> tuple[list[tuple[int, int, str]], list[tuple[int, str, str]], str]:
    content = text.encode("utf-8") if isinstance(text, str) else text
    result = parse_batch(content, name, MAX, batch_name="b", row_key_secret=SECRET)
    valid = [(p.row, p.job.amount_cents, p.reference) for p in result.valid]
    invalid = [(e.row, e.field, e.reason) for e in result.invalid]
    return valid, invalid, f"{result.dialect.describe()}, {result.encoding}"


def test_a_german_spreadsheet_export() -> None:
    rows = [
        "9276004424644352;1.234,56;EUR;Lohn-11-01",
        "9276000000000003;20,00;;Lohn-11-02",
        "9276000000000004;20;EUR;Lohn-11-03",
        "9276000000000003;20.00;EUR;Lohn-11-04",  # a decimal point in a German file
        "9276000000000003;1.23,4;EUR;Lohn-11-05",
        ";;;",  # the empty rows spreadsheets append
    ]
    valid, invalid, read_as = parse("\ufeff" + GERMAN + "\r\n".join(rows) + "\r\n")
    assert valid == [(1, 123456, "Lohn-11-01"), (2, 2000, "Lohn-11-02"), (3, 2000, "Lohn-11-03")]
    assert [(row, field) for row, field, _ in invalid] == [(4, "amount"), (5, "amount")]
    assert "not an amount like 20,00 or 1.234,56" in invalid[0][2]
    assert read_as == "CSV, ';'-separated, decimal comma, '.' for thousands, UTF-8"


def test_windows_1252_with_umlauts() -> None:
    content = (GERMAN + "9276004424644352;5,00;EUR;Prämie Müller\r\n").encode("cp1252")
    valid, invalid, read_as = parse(content)
    assert valid == [(1, 500, "Prämie Müller")] and invalid == []
    assert read_as.endswith("Windows-1252")


@pytest.mark.parametrize(
    "header",
    ["KARTENNUMMER;Betrag;Waehrung;Referenz", " Kartennummer ; Betrag ", "Card Number;Amount"],
)
def test_header_names_as_people_write_them(header: str) -> None:
    valid, _, _ = parse(header + "\n9276004424644352;7,50\n")
    assert valid == [(1, 750, "")]


def test_english_csv_and_tabs() -> None:
    valid, _, read_as = parse("card_number,amount\n9276004424644352,7.50\n")
    assert valid == [(1, 750, "")] and read_as == "CSV, ','-separated, decimal point, UTF-8"
    valid, _, read_as = parse("card_number\tamount\n9276004424644352\t7.50\n")
    assert valid == [(1, 750, "")] and read_as.startswith("CSV, tab-separated")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"),
        (b"card_number,amount\n\x81\x8d\n", "neither UTF-8 nor Windows-1252"),
        (b"card_number;amount,currency\n", "cannot tell the columns"),
        (b"Kartennummer\n9276004424644352\n", "cannot tell the columns"),
        (b"Kartennummer;Betrag;Farbe\n", "unknown columns: Farbe"),
        (b"Kartennummer;Betrag;Amount\n", "named twice: amount"),
        (b"Referenz;Betrag\n", "missing: card_number"),
        (b"\n\n", "the file is empty"),
    ],
)
def test_files_that_cannot_be_read_are_refused_whole(content: bytes, words: str) -> None:
    with pytest.raises(BatchFileError, match=words):
        parse(content)


def test_the_templates_are_headers_this_reader_takes() -> None:
    for dialect, header in TEMPLATES.items():
        row = "9276004424644352;5,00\n" if dialect == "de" else "9276004424644352,5.00\n"
        valid, _, read_as = parse(header + row)
        assert valid == [(1, 500, "")] and read_as.startswith("CSV"), dialect
