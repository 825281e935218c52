"""What a step tells its task to do next."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cardload.jobs.routing import Step


@dataclass(frozen=True)
class Continue:
    """Send the next step; ``queued``: its message went out with the step's end."""

    step: Step
    queued: bool = False


# The next step's message for a broker list of the job store's Redis, ``(list, message)``,
# or None where it must be sent the usual way: given to a step by its task.
NextMessage = Callable[[Step, str], tuple[str, str] | None]


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
