"""Amounts written by people ("20.00", "20,5") to exact integer cents."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from cardload.errors import CardloadError
from cardload.observability.masking import mask_text
from cardload.secuconnect.money import MINOR_UNITS

_AMOUNT = re.compile(r"^\d+([.,]\d+)?$")


class AmountError(CardloadError, ValueError):
    pass


def parse_amount(
    text: str | int | Decimal, currency: str = "EUR", max_cents: int | None = None
) -> int:
    """Major units to cents, exactly: ``"20.00"`` -> 2000. One decimal separator
    (``.`` or ``,``), no thousands separators, no sign, no fractions of a cent."""
    if currency not in MINOR_UNITS:
        raise AmountError(f"currency {currency!r} not supported ({', '.join(MINOR_UNITS)})")
    if isinstance(text, bool):
        raise AmountError("amount must be a number like 20.00")
    if isinstance(text, int | Decimal):
        value = Decimal(text)
    else:
        raw = text.strip()
        if not _AMOUNT.match(raw):
            # What was written may be a card number in the wrong column: masked.
            raise AmountError(f"{mask_text(repr(text))} is not an amount like 20.00")
        try:
            value = Decimal(raw.replace(",", "."))
        except InvalidOperation as exc:
            raise AmountError(f"{mask_text(repr(text))} is not an amount like 20.00") from exc
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
