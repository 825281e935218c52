"""Retry delays: exponential backoff with full jitter, and the server's Retry-After."""

from __future__ import annotations

from collections.abc import Callable


def backoff_delay_s(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    uniform: Callable[[], float],
    retry_after_s: float | None = None,
) -> float:
    """Delay before attempt ``attempt + 1``: uniform(0, min(cap, base * 2**(attempt-1))),
    never shorter than the server's Retry-After, never longer than the cap (which stays
    below the broker's visibility timeout, so a delayed retry is never run twice)."""
    ceiling = min(cap_s, base_s * 2.0 ** max(attempt - 1, 0))
    delay = float(uniform()) * ceiling
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return min(delay, cap_s)
