from __future__ import annotations

import pytest

from cardload.secuconnect.money import format_amount_de, format_money_de


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (7900, "79,00 EUR"),
        (790, "7,90 EUR"),
        (5, "0,05 EUR"),
        (0, "0,00 EUR"),
        (123456789, "1.234.567,89 EUR"),
        (-2000, "-20,00 EUR"),
    ],
)
def test_german_money(cents: int, text: str) -> None:
    assert format_money_de(cents) == text


def test_amount_without_currency() -> None:
    assert format_amount_de(2000) == "20,00"


@pytest.mark.parametrize("bad", [20.0, "2000", True])
def test_only_integer_cents(bad: object) -> None:
    with pytest.raises(TypeError):
        format_amount_de(bad)  # type: ignore[arg-type]
