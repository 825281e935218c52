from __future__ import annotations

from decimal import Decimal
from typing import Literal

import pytest

from cardload.producers.amounts import AmountError, parse_amount


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("20.00", 2000),
        ("20", 2000),
        ("20,5", 2050),
        ("0.01", 1),
        (" 7.90 ", 790),
        ("12345.67", 1234567),
        (Decimal("20.10"), 2010),
        (15, 1500),
    ],
)
def test_exact_cents(text: str | Decimal | int, cents: int) -> None:
    assert parse_amount(text) == cents


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("10.005", "fractions of a cent"),
        ("0", "greater than zero"),
        ("0.00", "greater than zero"),
        ("-5", "not an amount"),
        ("1,000.00", "not an amount"),
        ("20 EUR", "not an amount"),
        ("", "not an amount"),
        ("1e3", "not an amount"),
        (True, "must be a number"),
    ],
)
def test_refused(text: str, reason: str) -> None:
    with pytest.raises(AmountError, match=reason):
        parse_amount(text)


def test_maximum_and_currency() -> None:
    assert parse_amount("500.00", max_cents=50_000) == 50_000
    with pytest.raises(AmountError, match=r"maximum of 500\.00 EUR"):
        parse_amount("500.01", max_cents=50_000)
    with pytest.raises(AmountError, match="not supported"):
        parse_amount("5", "XYZ")


@pytest.mark.parametrize(
    ("decimal", "text", "cents"),
    [
        (",", "1.234,56", 123456),
        (",", "1234,5", 123450),
        (",", "12.345.678", 1234567800),
        (",", "20", 2000),
        (".", "1,234.56", 123456),
        (".", "20.05", 2005),
    ],
)
def test_amounts_the_german_and_the_english_way(
    decimal: Literal[".", ","], text: str, cents: int
) -> None:
    assert parse_amount(text, decimal=decimal) == cents


@pytest.mark.parametrize(
    ("decimal", "text"),
    [(",", "20.00"), (",", "1.23,4"), (",", "1,234.56"), (".", "20,00"), (".", "1.234,56")],
)
def test_a_separator_in_the_wrong_place_is_refused(decimal: Literal[".", ","], text: str) -> None:
    with pytest.raises(AmountError, match="is not an amount like"):
        parse_amount(text, decimal=decimal)
