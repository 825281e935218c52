"""Batch files as operators export them: German and English CSV, JSON Lines, UTF-8 with
and without BOM, Windows-1252; what cannot be told apart is refused, named."""

from __future__ import annotations

import pytest

from cardload.producers.batch import parse_batch
from cardload.producers.batch_files import TEMPLATES, BatchFileError

MAX = 1_000_000
SECRET = b"secret"
GERMAN = "Kartennummer;Betrag;Währung;Referenz\r\n"
# Digits as Japanese and Chinese input methods type them: isdigit() says yes, int() agrees.
FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + d) for d in range(10)))


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
    assert valid == [(1, 750, "")] and read_as == (
        "CSV, ','-separated, decimal point or comma, no thousands separators, UTF-8"
    )
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


def test_german_headers_mean_german_amounts_whatever_the_delimiter() -> None:
    """Excel's German "Text (Tabstopp-getrennt)": tabs, and "." for thousands."""
    valid, invalid, read_as = parse(
        "Kartennummer\tBetrag\tReferenz\n9276004424644352\t1.500\tr1\n"
        "9276004424644352\t12,50\tr2\n9276004424644352\t12.50\tr3\n"
    )
    assert valid == [(1, 150_000, "r1"), (2, 1250, "r2")]
    assert [(row, field) for row, field, _ in invalid] == [(3, "amount")]
    assert read_as.startswith("CSV, tab-separated, decimal comma")


@pytest.mark.parametrize(
    ("amount", "words"),
    [
        ('"1,500"', "may be thousands or a fraction"),
        ("12.500", "may be thousands or a fraction"),
        ("1.234", "for thousands, write it without a separator"),
        ("20.00".translate(FULLWIDTH), "is not an amount"),
    ],
)
def test_english_amounts_that_could_be_read_two_ways_are_refused(amount: str, words: str) -> None:
    valid, invalid, _ = parse(f"card_number,amount\n9276004424644352,{amount}\n")
    assert valid == [] and len(invalid) == 1
    assert invalid[0][1] == "amount" and words in invalid[0][2]


def test_an_amount_cut_in_two_by_a_decimal_comma_is_refused() -> None:
    valid, invalid, _ = parse(
        "card_number,amount,reference\n9276004424644352,20,50\n9276004424644352,20,emp-7\n"
    )
    assert valid == [(2, 2000, "emp-7")]
    assert [(row, field) for row, field, _ in invalid] == [(1, "amount")]
    assert "decimal comma" in invalid[0][2]


def test_a_file_without_a_header_is_refused_without_showing_the_card() -> None:
    with pytest.raises(BatchFileError) as refused:
        parse("9276004428134352,20.00\n")
    assert "9276004428134352" not in str(refused.value)
    assert "927600******4352" in str(refused.value)


def test_utf_16_as_excel_saves_unicode_text() -> None:
    text = "Kartennummer\tBetrag\tReferenz\r\n9276004424644352\t5,00\tPrämie\r\n"
    valid, _, read_as = parse(text.encode("utf-16"))
    assert valid == [(1, 500, "Prämie")] and read_as.endswith("UTF-16")


def test_fullwidth_digits_are_not_a_card_number() -> None:
    card = "9276004424644352".translate(FULLWIDTH)
    valid, invalid, _ = parse(f"card_number,amount\n{card},5.00\n")
    assert valid == [] and invalid[0][1] == "card_number"
