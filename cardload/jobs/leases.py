"""Keeping the leases of running steps alive.

A step's lease is short (``CARDLOAD_JOBS_LEASE_S``), so a job whose worker died is
free again soon. While the step runs, one thread per process renews every lease the
process holds, a third of the lease time before it runs out, in one pipelined round
trip. It stops renewing a lease once its step has run longer than any step can
(``max_hold_s``, from the HTTP timeouts): a step stuck on a trickling answer then
loses its lease to the next delivery, and its late writes are refused by the fence.

A renewal that finds the lease taken over marks it lost, so the step can stop before
its next call to the API instead of learning it only when its write is refused.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import redis

from cardload.jobs.store import JobStore, Lease
from cardload.observability import get_logger

log = get_logger(__name__)


class LeaseKeeper:
    def __init__(
        self,
        store: JobStore,
        lease_ms: int,
        max_hold_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.lease_ms = lease_ms
        self.max_hold_s = max_hold_s
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[Lease, float] = {}  # lease -> when its step claimed it
        self._lost: set[Lease] = set()
        self._pid = 0
        self._stop = threading.Event()

    def hold(self, lease: Lease) -> None:
        with self._lock:
            self._held[lease] = self._clock()
            if self._pid != os.getpid():  # first use in this process (or a forked child)
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="cardload-leases", daemon=True).start()

    def drop(self, lease: Lease) -> None:
        with self._lock:
            self._held.pop(lease, None)
            self._lost.discard(lease)

    def lost(self, lease: Lease) -> bool:
        with self._lock:
            return lease in self._lost

    def renew_all(self) -> None:
        """One renewal round for every lease still within its step's time."""
        now = self._clock()
        with self._lock:
            due = [
                lease
                for lease, since in self._held.items()
                if lease not in self._lost and now - since < self.max_hold_s
            ]
        if not due:
            return
        renewed = self.store.renew(due, self.lease_ms)
        with self._lock:
            for lease, ok in zip(due, renewed, strict=True):
                if not ok and lease in self._held:
                    self._lost.add(lease)
                    log.warning("lease.lost", job_id=lease.job_id, fence=lease.fence)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        interval_s = self.lease_ms / 3000
        while not self._stop.wait(interval_s):
            try:
                self.renew_all()
            except redis.RedisError as exc:
                log.warning("lease.renew_failed", error=str(exc))
