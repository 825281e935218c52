"""Redis replies are bytes or str depending on the client's decode setting."""

from __future__ import annotations

from typing import Any


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
