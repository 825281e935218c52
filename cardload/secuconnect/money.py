"""Money is integer minor units (cents) everywhere; these helpers only format for people."""

from __future__ import annotations

# Minor units per currency. secucard cards are EUR; the others are here so formatting
# never silently assumes two decimals for a currency it does not know.
MINOR_UNITS: dict[str, int] = {"EUR": 2, "CHF": 2, "USD": 2, "GBP": 2}


def format_amount_de(cents: int, currency: str = "EUR") -> str:
    """German number format without currency: 123456 -> ``1.234,56``."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError(f"amount must be integer minor units, got {type(cents).__name__}")
    digits = MINOR_UNITS[currency]
    sign = "-" if cents < 0 else ""
    major, minor = divmod(abs(cents), 10**digits)
    grouped = f"{major:,}".replace(",", ".")
    return f"{sign}{grouped},{minor:0{digits}d}" if digits else f"{sign}{grouped}"


def format_money_de(cents: int, currency: str = "EUR") -> str:
    """As on a secucard receipt: 7900 -> ``79,00 EUR``."""
    return f"{format_amount_de(cents, currency)} {currency}"
