"""Amounts written by people ("20.00", "20,5") to exact integer cents."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Literal

from cardload.errors import CardloadError
from cardload.observability.masking import mask_text
from cardload.secuconnect.money import MINOR_UNITS

# Either decimal separator, no thousands: 20.00, 20,5, 20.
_AMOUNT = re.compile(r"^\d+([.,]\d+)?$")
# The decimal comma, "." only between thousands: 1.234,56, 1234,56, 20.
_COMMA_AMOUNT = re.compile(r"^(\d{1,3}(\.\d{3})+|\d+)(,\d+)?$")
# The decimal point, "," only between thousands: 1,234.56, 1234.56, 20.
_POINT_AMOUNT = re.compile(r"^(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")
_EXAMPLE = {None: "20.00", ",": "20,00 or 1.234,56", ".": "20.00 or 1,234.56"}


class AmountError(CardloadError, ValueError):
    """What a person wrote is not an amount, or not one cardload may load."""


def _decimal_value(raw: str, decimal: Literal[".", ","] | None) -> Decimal | None:
    """The amount's value as written in this style, or None if it is not one."""
    if decimal is None:
        return Decimal(raw.replace(",", ".")) if _AMOUNT.match(raw) else None
    pattern, thousands = (_COMMA_AMOUNT, ".") if decimal == "," else (_POINT_AMOUNT, ",")
    if not pattern.match(raw):
        return None
    return Decimal(raw.replace(thousands, "").replace(",", "."))


def parse_amount(
    text: str | int | Decimal,
    currency: str = "EUR",
    max_cents: int | None = None,
    *,
    decimal: Literal[".", ","] | None = None,
) -> int:
    """Major units to cents, exactly: ``"20.00"`` -> 2000. No sign, no fractions of a
    cent. ``decimal`` None: one separator, ``.`` or ``,``, no thousands; ``","``: the
    German way, ``1.234,56``; ``"."``: the English way, ``1,234.56``."""
    if currency not in MINOR_UNITS:
        raise AmountError(f"currency {currency!r} not supported ({', '.join(MINOR_UNITS)})")
    if isinstance(text, bool):
        raise AmountError("amount must be a number like 20.00")
    if isinstance(text, int | Decimal):
        value = Decimal(text)
    else:
        try:
            parsed = _decimal_value(text.strip(), decimal)
        except InvalidOperation:
            parsed = None
        if parsed is None:
            # What was written may be a card number in the wrong column: masked.
            written = mask_text(repr(text))
            raise AmountError(f"{written} is not an amount like {_EXAMPLE[decimal]}")
        value = parsed
    cents = value.scaleb(MINOR_UNITS[currency])
    if cents != cents.to_integral_value():
        raise AmountError(f"{mask_text(str(text))} has fractions of a cent")
    result = int(cents)
    if result <= 0:
        raise AmountError("amount must be greater than zero")
    if max_cents is not None and result > max_cents:
        limit = Decimal(max_cents).scaleb(-MINOR_UNITS[currency])
        raise AmountError(f"amount exceeds the maximum of {limit} {currency}")
    return result
