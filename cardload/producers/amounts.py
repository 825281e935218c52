"""Amounts written by people ("20.00", "20,5") to exact integer cents."""

from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation
from typing import Literal

from cardload.errors import CardloadError
from cardload.observability.masking import mask_text
from cardload.secuconnect.money import MINOR_UNITS

# Either decimal separator, no thousands: 20.00, 20,5, 20.
_AMOUNT = re.compile(r"^\d+([.,]\d+)?$", re.ASCII)
# With either separator, "1,500" or "12.500" is a thousands group to one reader and
# a fraction to another: refused, never guessed. ("1,234" cannot be a fraction in
# cents, so it is refused as one, with the hint.)
_THOUSANDS_SHAPE = re.compile(r"^[1-9]\d{0,2}[.,]\d{3}$", re.ASCII)
# The decimal comma, "." only between thousands: 1.234,56, 1234,56, 20.
_COMMA_AMOUNT = re.compile(r"^(\d{1,3}(\.\d{3})+|\d+)(,\d+)?$", re.ASCII)
# The decimal point, "," only between thousands: 1,234.56, 1234.56, 20.
_POINT_AMOUNT = re.compile(r"^(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$", re.ASCII)
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


_MAX_DIGITS = 15  # major units of at most 10^15: larger is no amount anyone loads


def _written(text: str, decimal: Literal[".", ","] | None) -> Decimal:
    """What a person wrote, as a number (what may be a card number is masked)."""
    raw = text.strip()
    shown = mask_text(repr(raw))
    if decimal is None and _THOUSANDS_SHAPE.match(raw):
        if raw.endswith("0"):
            raise AmountError(
                f"{shown} may be thousands or a fraction: write it without a thousands "
                "separator (1500, 1.50)"
            )
        raise AmountError(
            f"{shown} has fractions of a cent (for thousands, write it without a separator: 1234)"
        )
    try:
        value = _decimal_value(raw, decimal)
    except InvalidOperation:
        value = None
    if value is None:
        raise AmountError(f"{shown} is not an amount like {_EXAMPLE[decimal]}")
    return value


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
    if isinstance(text, bool) or not isinstance(text, str | int | Decimal):
        raise AmountError("amount must be a number like 20.00")  # null, a list, a float
    value = Decimal(text) if isinstance(text, int | Decimal) else _written(text, decimal)
    if not value.is_finite():
        raise AmountError(f"{mask_text(str(text))} is not an amount like 20.00")
    if value.adjusted() > _MAX_DIGITS:
        raise AmountError(f"{mask_text(str(text))[:40]} is far too large an amount")
    # Exact, whatever the digits: the default context would round to 28 of them, and a
    # fraction of a cent far down would go unseen.
    exact = Context(prec=len(value.as_tuple().digits) + MINOR_UNITS[currency] + 2)
    cents = value.scaleb(MINOR_UNITS[currency], context=exact)
    if cents != cents.to_integral_value():
        raise AmountError(f"{mask_text(str(text))} has fractions of a cent")
    result = int(cents)
    if result <= 0:
        raise AmountError("amount must be greater than zero")
    if max_cents is not None and result > max_cents:
        limit = Decimal(max_cents).scaleb(-MINOR_UNITS[currency])
        raise AmountError(f"amount exceeds the maximum of {limit} {currency}")
    return result
