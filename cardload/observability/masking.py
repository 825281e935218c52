"""Card numbers are shown as ``927600******4352`` wherever people or logs see them.

Free text is searched for 13 to 19 digits written together, or for groups of digits
that add up to 13 or more, separated by up to three spaces (any kind), dashes, dots,
slashes, underscores or parentheses (``9276 0044 2464 4352``, ``92760044 24644352``,
``(9276) 0044-2464-4352``). The first six and the last four digits stay, the
separators stay, every other digit becomes ``*``. Shorter ids (TA codes, amounts,
dates) stay readable, and so do the digits after a decimal point (durations such as
0.07488760000001093). Over-masking a long number that is not a card is the safe side.
"""

from __future__ import annotations

import re
from typing import Any

_SEPARATOR = r"[\s._/()-]{1,3}"
# Not right after a digit, nor after "digit." (the fraction of a number; a comma is as
# often a list separator, "1,9276004424644352", as a decimal one).
_START = r"(?<!\d)(?<!\d\.)"
_CARD = re.compile(rf"{_START}(?:\d{{13,19}}|\d{{2,19}}(?:{_SEPARATOR}\d{{1,19}}){{1,9}})(?!\d)")
_DIGIT = re.compile(r"\d")
SECRET_KEYS = frozenset(
    {"access_token", "authorization", "client_secret", "password", "secret", "token"}
)
REDACTED = "**********"


def mask_card_number(number: str) -> str:
    """First six and last four digits, as PCI DSS allows: 9276004424644352 -> 927600******4352."""
    if number.isascii() and number.isdigit() and len(number) >= 13:  # usual: no regex
        return f"{number[:6]}{'*' * (len(number) - 10)}{number[-4:]}"
    digits = sum(c.isdigit() for c in number)
    if digits < 13:
        return "*" * len(number)
    return _mask_digits(number, digits)


def _mask_digits(text: str, digits: int) -> str:
    seen = 0

    def star(match: re.Match[str]) -> str:
        nonlocal seen
        seen += 1
        return match.group() if seen <= 6 or seen > digits - 4 else "*"

    return _DIGIT.sub(star, text)


def _mask_match(match: re.Match[str]) -> str:
    found = match.group()
    digits = sum(c.isdigit() for c in found)
    # Groups that add up to fewer than 13 digits are something else: a date, a phone.
    # More than 19 may hold a card among other digits: masked all the same.
    return _mask_digits(found, digits) if digits >= 13 else found


def mask_url(url: str) -> str:
    """The URL without its password (``redis://:**@host:6379/0``), whatever characters
    the password holds, encoded or not; a ``password=`` parameter too."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, host = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        safe_user = colon and not any(c in user for c in "/?#@")
        rest = f"{user}:**@{host}" if safe_user else f"**@{host}"
    return scheme + sep + re.sub(r"(?i)(password=)[^&#]*", r"\1**", rest)


def mask_text(text: str) -> str:
    """Mask every card-number-like run of digits in free text."""
    return _CARD.sub(_mask_match, text)


def mask_value(value: Any) -> Any:
    """Strings masked with :func:`mask_text`, inside dicts and lists too."""
    if isinstance(value, str):
        return mask_text(value) if len(value) >= 13 else value  # a card has 13 digits
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    return value


def mask_receipt(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Receipt lines with card numbers masked in every value and text."""
    return [mask_value(line) for line in lines]
