"""One rate limit for the API, shared by every worker through Redis: requests per
second (GCRA, one script per call) and calls in flight (a counting semaphore whose
tokens are leased, so a worker that dies holds none for long).

A call reserves the next free slot and waits for it; one whose slot is further off
than ``max_wait_s`` (or that finds no free place in flight for as long) is not sent:
:class:`CallHeldError`, and its step waits without spending an attempt. Off unless
configured (``CARDLOAD_RATE_LIMIT_PER_S``, ``CARDLOAD_RATE_LIMIT_IN_FLIGHT``): each
costs a round trip to Redis per call.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable

import redis

from cardload.config.settings import RateLimitSettings
from cardload.flowcontrol import scripts
from cardload.jobs import keys
from cardload.observability.metrics import RATE_LIMIT_WAIT_SECONDS, RATE_LIMIT_WAITS
from cardload.secuconnect import CallHeldError

_POLL_S = 0.02  # between tries for a place in flight


class SharedRateLimit:
    """Thread-safe; one per process."""

    def __init__(
        self,
        client: redis.Redis,
        settings: RateLimitSettings,
        lease_s: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._lease_ms = int(lease_s * 1000)
        self._sleep = sleep
        self._rate = client.register_script(scripts.RATE)
        self._enter = client.register_script(scripts.ENTER)
        self._redis = client

    @property
    def enabled(self) -> bool:
        return bool(self._settings.per_s or self._settings.in_flight)

    def wait(self, pause_s: float = 0.0) -> str | None:
        """Wait for the call's turn; returns its place in flight (give it back with
        :meth:`leave`), if calls in flight are limited. ``pause_s``: a 429's wait that
        every call keeps first."""
        s = self._settings
        if pause_s > 0:
            self._hold_or_wait("retry_after", pause_s)
        if s.per_s:
            interval_ms = 1000 / s.per_s
            taken, wait_ms = self._rate(
                keys=[keys.RATE], args=[f"{interval_ms:.3f}", s.burst, int(s.max_wait_s * 1000)]
            )
            wait_s = float(wait_ms) / 1000
            if not int(taken):
                self._held("per_s", wait_s)
            if wait_s > 0:
                self._waited("per_s", wait_s)
                self._sleep(wait_s)
        if not s.in_flight:
            return None
        token = uuid.uuid4().hex
        began = time.monotonic()
        while not int(
            self._enter(keys=[keys.IN_FLIGHT], args=[s.in_flight, token, self._lease_ms])
        ):
            waited = time.monotonic() - began
            if waited >= s.max_wait_s:
                self._held("in_flight", 1.0)
            self._sleep(_POLL_S * (0.5 + random.random()))
        waited = time.monotonic() - began
        if waited > 0.001:
            self._waited("in_flight", waited)
        return token

    def leave(self, token: str | None) -> None:
        if token is not None:
            self._redis.zrem(keys.IN_FLIGHT, token)

    def _hold_or_wait(self, limit: str, wait_s: float) -> None:
        if wait_s > self._settings.max_wait_s:
            self._held(limit, wait_s)
        self._waited(limit, wait_s)
        self._sleep(wait_s)

    @staticmethod
    def _waited(limit: str, seconds: float) -> None:
        RATE_LIMIT_WAITS.labels(limit).inc()
        RATE_LIMIT_WAIT_SECONDS.labels(limit).inc(seconds)

    @staticmethod
    def _held(limit: str, wait_s: float) -> None:
        RATE_LIMIT_WAITS.labels(limit).inc()
        raise CallHeldError(
            f"the shared rate limit ({limit}) would hold the call {wait_s:.1f} s",
            retry_after_s=wait_s,
        )
