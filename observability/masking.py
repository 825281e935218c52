"""Card numbers are shown as ``927600******4352`` wherever people or logs see them."""

from __future__ import annotations

import re
from typing import Any

# 13-19 digit runs: card numbers; shorter ids (TA codes, amounts) stay readable, and
# so do the digits after a decimal point (durations such as 0.07488760000001093).
_CARD = re.compile(r"(?<![\d.])(\d{6})(\d{3,9})(\d{4})(?!\d)")
SECRET_KEYS = frozenset(
    {"access_token", "authorization", "client_secret", "password", "secret", "token"}
)
REDACTED = "**********"


def mask_card_number(number: str) -> str:
    """First six and last four digits, as PCI DSS allows: 9276004424644352 -> 927600******4352."""
    if len(number) < 13:
        return "*" * len(number)
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


def mask_receipt(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Receipt lines with card numbers masked in every value and text."""

    def masked(value: Any) -> Any:
        if isinstance(value, str):
            return mask_text(value)
        if isinstance(value, dict):
            return {k: masked(v) for k, v in value.items()}
        if isinstance(value, list):
            return [masked(v) for v in value]
        return value

    return [masked(line) for line in lines]


def mask_text(text: str) -> str:
    """Mask every card-number-like run of digits in free text."""
    return _CARD.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)
