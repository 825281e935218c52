"""One circuit breaker for the API, shared by every worker through Redis.

Closed, calls go. When the API fails every call for a while (``failures`` in a row,
counted across all workers: 5xx, no answer, a token endpoint that fails), or the token
endpoint refuses our credentials (at once), it opens: no call is sent, steps wait with
their attempts given back (never a dead letter), for ``open_s``, doubling with each
opening in a row up to ``max_open_s``. Then one call anywhere is the probe (a lease in
Redis, so one at a time across hosts): if the API answers, the breaker closes and
everyone resumes; if not, it opens again.

Each process reads the shared state at most every ``REFRESH_S`` (and learns at once
what its own calls change), so a closed breaker costs a call nothing; a failure costs
a script, a success one only while failures are being counted.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Literal

import redis

from cardload.config.settings import BreakerSettings
from cardload.flowcontrol import scripts
from cardload.jobs import keys
from cardload.observability import get_logger
from cardload.observability.metrics import BREAKER_OPENINGS, BREAKER_STATE

log = get_logger(__name__)

State = Literal["closed", "open", "half_open"]
_GAUGE = {"closed": 0, "half_open": 1, "open": 2}
REFRESH_S = 1.0  # how stale a process's view of the shared state may be


@dataclass(frozen=True)
class BreakerView:
    """The shared state as read: for ``cardload health`` and logs."""

    state: State
    open_for_s: float  # until the next probe may go
    failures: int  # in a row, while closed
    reason: str
    paused_for_s: float  # a 429's Retry-After, for everyone


class SharedBreaker:
    """Thread-safe; one per process."""

    def __init__(self, client: redis.Redis, settings: BreakerSettings) -> None:
        self._redis = client
        self._settings = settings
        self._holder = uuid.uuid4().hex  # this process, as the probe's holder
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._state: State = "closed"
        self._open_until = 0.0  # monotonic
        self._failures = 0
        self._pause_until = 0.0  # monotonic
        self._reason = ""
        self._ok_noted = float("-inf")
        register = client.register_script
        self._read = register(scripts.READ)
        self._failure = register(scripts.FAILURE)
        self._success = register(scripts.SUCCESS)
        self._probe = register(scripts.PROBE)
        self._pause = register(scripts.PAUSE)
        self._unprobe = register(scripts.UNPROBE)

    # --- what a call asks -------------------------------------------------------------

    def admit(self) -> tuple[bool, float, bool]:
        """May a call go now? ``(True, 0, probe)``: yes, and whether it is the probe
        (whose answer decides the breaker); ``(False, s, False)``: not for ``s`` seconds."""
        self._refresh()
        with self._lock:
            if self._state == "closed":
                return True, 0.0, False
        reply = self._probe(
            keys=[keys.BREAKER, keys.BREAKER_PROBE], args=[self._lease_ms, self._holder]
        )
        verdict = _text(reply[0])
        if verdict == "closed":
            self._saw("closed")
            return True, 0.0, False
        if verdict == "probe":
            self._saw("half_open")
            log.warning("breaker.probing")
            return True, 0.0, True
        wait_s = int(reply[1]) / 1000
        with self._lock:
            self._open_until = max(self._open_until, time.monotonic() + wait_s)
        return False, wait_s, False

    def open_for(self) -> float:
        """Seconds until a probe may go (0: closed, or a probe is due), as last read."""
        self._refresh()
        with self._lock:
            if self._state == "closed":
                return 0.0
            return max(0.0, self._open_until - time.monotonic())

    def reason(self) -> str:
        with self._lock:
            return self._reason

    def unprobe(self) -> None:
        """The probe this process was granted is not sent: another may probe now."""
        self._unprobe(keys=[keys.BREAKER_PROBE], args=[self._holder])

    def paused_for(self) -> float:
        """Seconds every call still waits for a 429's Retry-After (as last read)."""
        self._refresh()
        with self._lock:
            return max(0.0, self._pause_until - time.monotonic())

    # --- what a call tells ------------------------------------------------------------

    def succeeded(self) -> None:
        now = time.monotonic()
        with self._lock:
            quiet = self._state == "closed" and self._failures == 0
            if quiet and now - self._ok_noted < REFRESH_S:
                return  # the usual case: nothing to write
            self._ok_noted = now  # a success noted at most once a REFRESH_S when quiet
        state = _text(self._success(keys=[keys.BREAKER, keys.BREAKER_PROBE], args=[self._holder]))
        with self._lock:
            self._failures = 0
        if state == "closed" and self._saw("closed"):
            log.warning("breaker.closed")

    def failed(self, reason: str, *, at_once: bool = False) -> None:
        s = self._settings
        reply = self._failure(
            keys=[keys.BREAKER, keys.BREAKER_PROBE],
            args=[
                s.failures,
                int(s.open_s * 1000),
                int(s.max_open_s * 1000),
                reason,
                int(at_once),
                self._holder,
            ],
        )
        state, span_ms = _text(reply[0]), int(reply[1])
        if state == "half_open":
            return  # a call from before the opening, failing late: the probe decides
        if state == "open":
            with self._lock:
                self._open_until = max(self._open_until, time.monotonic() + span_ms / 1000)
                self._reason = reason if span_ms else self._reason
            self._saw("open")
            if span_ms:
                BREAKER_OPENINGS.labels(reason).inc()
                log.error("breaker.opened", reason=reason, open_for_s=span_ms / 1000)
        else:
            with self._lock:
                self._failures += 1

    def pause(self, seconds: float) -> None:
        """A 429 asked for ``seconds``: every worker waits that long."""
        self._pause(keys=[keys.BREAKER], args=[int(seconds * 1000)])
        with self._lock:
            self._pause_until = max(self._pause_until, time.monotonic() + seconds)

    def view(self) -> BreakerView:
        """The shared state, read now."""
        state, open_ms, failures, reason, pause_ms = self._read(keys=[keys.BREAKER])
        return BreakerView(
            state=_text(state),  # type: ignore[arg-type]  # written only by our scripts
            open_for_s=int(open_ms) / 1000,
            failures=int(failures),
            reason=_text(reason),
            paused_for_s=int(pause_ms) / 1000,
        )

    # --- the local view ------------------------------------------------------------------

    @property
    def _lease_ms(self) -> int:
        return int(self._settings.probe_timeout_s * 1000)

    def _refresh(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._read_at < REFRESH_S:
                return
            self._read_at = now  # one reader per interval; the others use the old view
        seen = self.view()
        with self._lock:
            self._failures = seen.failures
            self._open_until = now + seen.open_for_s
            self._pause_until = now + seen.paused_for_s
            self._reason = seen.reason
        self._saw(seen.state)

    def _saw(self, state: State) -> bool:
        """Note the state; True if it changed."""
        with self._lock:
            changed, self._state = self._state != state, state
        BREAKER_STATE.set(_GAUGE[state])
        return changed


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
