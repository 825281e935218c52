"""What a step tells its task to do next."""

from __future__ import annotations

from dataclasses import dataclass

from cardload.jobs.routing import Step


@dataclass(frozen=True)
class Continue:
    """Send the next step."""

    step: Step


@dataclass(frozen=True)
class RetryLater:
    """Run this step again after ``delay_s``."""

    delay_s: float
    reason: str


@dataclass(frozen=True)
class Finished:
    """Nothing more to do for this message (done, dead-lettered, or a duplicate)."""

    reason: str


Outcome = Continue | RetryLater | Finished
