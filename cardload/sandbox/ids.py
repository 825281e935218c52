"""Deterministic identifiers: the same seed gives the same ids, TA codes and tokens."""

from __future__ import annotations

import random
import string

_ID_ALPHABET = string.ascii_uppercase + string.digits
_TOKEN_ALPHABET = string.ascii_lowercase + string.digits
FIRST_TA_CODE = 32076570  # the seed's first TA code, so a fresh sandbox prints the seed's receipt


class IdFactory:
    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._ta_code = FIRST_TA_CODE
        self._card_serial = 0

    def object_id(self, prefix: str) -> str:
        """``STX_`` + 30 upper-case letters and digits, as the API's ids."""
        return prefix + "_" + "".join(self._rng.choices(_ID_ALPHABET, k=30))

    def token(self) -> str:
        return "".join(self._rng.choices(_TOKEN_ALPHABET, k=26))

    def support_id(self) -> str:
        return f"{self._rng.getrandbits(128):032x}"

    def ta_code(self) -> str:
        code = self._ta_code
        self._ta_code += 1
        return str(code)

    def card_number(self) -> str:
        """Issued card numbers: prefix 9276, then a serial (no check digit, like the seed's)."""
        self._card_serial += 1
        return f"92761{self._card_serial:011d}"
