"""Fault injection: deterministic for a given seed and sequence of requests.

Each API request draws, in order, its latency jitter and one number per matching
rule; the first rule whose draw falls under its probability fires. ``times`` caps
how often a rule fires, so "503 twice, then success" needs no randomness at all.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cardload.secuconnect.statuses import StatusMeaning, meaning

FaultKind = Literal[
    "error_500",
    "error_502",
    "error_503",
    "rate_limit",
    "reset",
    "slow",
    "commit_then_lose",
    "processing",
]
Endpoint = Literal["token", "create", "get", "list", "start", "prepare", "cancel"]
ENDPOINTS: tuple[Endpoint, ...] = get_args(Endpoint)

# Faults that answer instead of the API: the request has no effect.
REFUSING: frozenset[str] = frozenset({"error_500", "error_502", "error_503", "rate_limit", "reset"})


class FaultRule(BaseModel):
    """One kind of fault. ``slow`` answers late (after the effect); ``commit_then_lose``
    takes effect and then resets the connection, never answers, or answers 503 or 408
    as a gateway in front of the API would; ``reset`` drops the connection before
    anything happens; ``processing`` (starts only) answers ``processing`` and ends the
    payment ``delay_ms`` later as ``ends_as`` (a paid status loads the card, a failed
    one does not, nor does one that ends without a description), as a payment that takes
    a while; with ``delay_ms=0`` it ends at once."""

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    probability: float = Field(1.0, ge=0.0, le=1.0)
    endpoint: Endpoint | None = None  # None: every API endpoint
    times: int | None = Field(None, ge=1)
    retry_after_s: int = Field(1, ge=0)  # rate_limit
    # slow: answer after; commit_then_lose/timeout: hold for; processing: time until ok
    delay_ms: int = Field(30_000, ge=0)
    lose_as: Literal["reset", "timeout", "503", "408"] = "reset"
    ends_as: str = "ok"  # processing: the status the payment ends in

    @field_validator("ends_as")
    @classmethod
    def _final(cls, status: str) -> str:
        if meaning(status) not in (
            StatusMeaning.PAID,
            StatusMeaning.FAILED,
            StatusMeaning.ENDED_UNKNOWN,
        ):
            raise ValueError(f"{status!r} is not a status a payment ends in")
        return status

    @classmethod
    def parse(cls, spec: str) -> FaultRule:
        """``kind=error_503,probability=0.2,endpoint=start`` (the CLI's --fault)."""
        fields = dict(part.split("=", 1) for part in spec.split(",") if part.strip())
        return cls.model_validate({k.strip(): v.strip() for k, v in fields.items()})


class FaultSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    latency_ms: int = Field(0, ge=0)
    jitter_ms: int = Field(0, ge=0)
    rules: list[FaultRule] = Field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    latency_s: float
    rule: FaultRule | None


class FaultInjector:
    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._lock = threading.Lock()
        self.fired: Counter[str] = Counter()
        self.configure(settings or FaultSettings())

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def configure(self, settings: FaultSettings) -> None:
        with self._lock:
            self._settings = settings
            self._rng = random.Random(settings.seed)
            self._times = [0] * len(settings.rules)
            self.fired.clear()

    def decide(self, endpoint: Endpoint) -> Decision:
        with self._lock:
            s = self._settings
            latency_ms = s.latency_ms + (self._rng.uniform(0, s.jitter_ms) if s.jitter_ms else 0)
            for i, rule in enumerate(s.rules):
                if rule.endpoint not in (None, endpoint):
                    continue
                if rule.kind == "processing" and endpoint != "start":
                    continue  # only a payment takes a while
                if rule.times is not None and self._times[i] >= rule.times:
                    continue
                if self._rng.random() < rule.probability:
                    self._times[i] += 1
                    self.fired[f"{endpoint}:{rule.kind}"] += 1
                    return Decision(latency_ms / 1000, rule)
            return Decision(latency_ms / 1000, None)
