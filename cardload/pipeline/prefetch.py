"""A create's merchantRef lookup made while its message waits for a thread.

The lookup before a create (steps.py) is a third API call in a row where a bare chain
makes two. A worker whose steps run in its own process (the threads pool) receives
messages before a thread is free to run them; this looks their keys up in the
meantime, in the background, several per search, so the create that then runs finds
the answer ready or waits for it: under load, one search for several loads.

Keys are gathered until ``MAX_KEYS`` wait or the first has waited ``GATHER_S``, then
sent as one search. A create whose key is still gathering waits for that search if
another key shares it: up to ``GATHER_S`` more for its create when jobs arrive
together, in exchange for one search for several of them (at 0 ms added latency, 2.3
API calls per load instead of 2.95, ``bench/worker_cost.py``). Alone, it takes its
key back and looks up at once; behind a slow search that keeps its own from being
sent, after ``SEND_GRACE_S``.

Used only on a job's first attempt, only when the record shows no doubt, and only
while the answer is at most ``MAX_AGE_S`` old: any lookup made after the job was
admitted finds what an earlier load under its key left (the case the lookup is for: a
Redis that lost the record), and a transaction created after the lookup cannot be
started by anyone (its creator's writes are fenced off by the claim): at worst it is
left ``created``, as one landing after an inline lookup is, the window being the
answer's age instead of the lookup's. After a retry, a replay or a takeover the step
looks up again, fresh: an ambiguous create of the attempt before may land late. Off
unless every create looks up (``create_lookup=always``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

from cardload.jobs.store import JobStore
from cardload.observability import get_logger
from cardload.pipeline.lookups import MAX_KEYS, MAX_QUERY_CHARS, Search, query_chars
from cardload.secuconnect import SecuconnectError, SmartTransaction

log = get_logger(__name__)

MAX_KEPT = 4096  # answers waiting for their create; the oldest go first
# Longest a key waits for others to share its search.
GATHER_S = 0.05
# How much later than that a create waits for its key's search to be sent, the thread
# being busy with another (a slow API): then it looks up for itself.
SEND_GRACE_S = 0.25
# A create whose key is still gathering waits for the search only if this many keys
# (its own included) share it; alone or nearly, it looks up now, waiting for no one.
SHARED_BY = 2
# An answer older than this is not used: the create looks up again. The older the
# answer, the longer the window in which an earlier load's create still in flight (its
# record lost with a Redis) can land unseen and leave a second, never started,
# transaction under the key; looked up after the claim, that window is the lookup's.
MAX_AGE_S = 2.0


class LookupPrefetch:
    """Thread-safe; one background thread, started on the first :meth:`submit`."""

    def __init__(self, store: JobStore, search: Search, *, enabled: bool = True) -> None:
        self._store = store
        self._search = search
        self._enabled = enabled  # only where every create looks up (create_lookup=always)
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the thread: keys to send
        self._answered = threading.Condition(self._lock)  # creates: a search answered
        self._gathering: OrderedDict[str, float] = OrderedDict()  # job id: when submitted
        self._in_flight: set[str] = set()  # in a search sent, not yet answered
        # Taken back or given up on while their search was under way: its answer, from
        # before the create's own lookup, must never be given to a later take.
        self._withdrawn: set[str] = set()
        self._found: OrderedDict[str, tuple[float, list[SmartTransaction]]] = OrderedDict()
        self._thread: threading.Thread | None = None

    def submit(self, job_id: str) -> None:
        """Look ``job_id``'s key up soon (a create message for it was received)."""
        if not self._enabled:
            return
        with self._lock:
            if not self._alive():
                thread = threading.Thread(target=self._run, name="cardload-lookahead", daemon=True)
                thread.start()  # if it cannot start, nothing is waited for: all look up
                self._thread = thread
            self._gathering.setdefault(job_id, time.monotonic())
            self._work.notify()

    def take(self, job_id: str, wait_s: float) -> list[SmartTransaction] | None:
        """The transactions found under the job's key, if looked up ahead and not too
        long ago (waiting up to ``wait_s`` for its search); each answer is given once.
        None: look up now. A key gathering alone is taken back at once; one whose search
        is not sent within ``SEND_GRACE_S`` of its time (the thread busy with a slow
        search) is taken back then."""
        deadline = time.monotonic() + wait_s
        with self._lock:
            submitted = self._gathering.get(job_id)
            if submitted is not None and len(self._gathering) < SHARED_BY:
                self._withdraw(job_id)
                return None
            while (job_id in self._gathering or job_id in self._in_flight) and self._alive():
                until = deadline
                if job_id in self._gathering and submitted is not None:
                    until = min(deadline, submitted + GATHER_S + SEND_GRACE_S)
                left = until - time.monotonic()
                timed_out = left <= 0 or not self._answered.wait(left)
                if timed_out and (job_id in self._gathering or time.monotonic() >= deadline):
                    self._withdraw(job_id)
                    return None
            found = self._found.pop(job_id, None)
        if found is None or time.monotonic() - found[0] > MAX_AGE_S:
            return None
        return found[1]

    def _withdraw(self, job_id: str) -> None:
        """Forget the key's lookup (lock held): the create looks up for itself."""
        self._gathering.pop(job_id, None)
        self._found.pop(job_id, None)  # an older answer must not stand in
        if job_id in self._in_flight:
            self._withdrawn.add(job_id)

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._lock:
                wanted = self._next_batch()
                self._in_flight.update(wanted)
            try:
                self._look_up(wanted)
            except Exception as exc:  # the create looks up for itself
                log.info("lookahead.failed", error=str(exc), jobs=len(wanted))
            finally:
                with self._lock:
                    self._in_flight.difference_update(wanted)
                    self._withdrawn.difference_update(wanted)
                    self._answered.notify_all()

    def _next_batch(self) -> list[str]:
        """Wait (holding the lock between waits) until ``MAX_KEYS`` keys gather or the
        first has waited ``GATHER_S``; take up to ``MAX_KEYS`` of them."""
        while True:
            if len(self._gathering) >= MAX_KEYS:
                break
            if self._gathering:
                first = next(iter(self._gathering.values()))
                left = first + GATHER_S - time.monotonic()
                if left <= 0:
                    break
                self._work.wait(left)
            else:
                self._work.wait()
        batch: list[str] = []
        while self._gathering and len(batch) < MAX_KEYS:
            batch.append(self._gathering.popitem(last=False)[0])
        return batch

    def _look_up(self, job_ids: Sequence[str]) -> None:
        asked = time.monotonic()
        with self._lock:
            for job_id in job_ids:  # an answer from before, never to stand in for this one
                self._found.pop(job_id, None)
        keys: dict[str, str] = {}
        chars = 0
        for job_id, key in self._store.keys_to_look_up(job_ids).items():
            chars += query_chars(key)
            if "*" not in key and "?" not in key and chars <= MAX_QUERY_CHARS:
                keys[job_id] = key  # the others look up for themselves
        if not keys:
            return
        try:
            found = self._search(list(keys.values()))
        except SecuconnectError as exc:
            log.info("lookahead.failed", error=str(exc), jobs=len(keys))
            return
        with self._lock:
            for job_id, key in keys.items():
                if job_id not in self._withdrawn:
                    self._found[job_id] = (asked, found.get(key, []))
            while len(self._found) > MAX_KEPT:
                self._found.popitem(last=False)
