"""A create's merchantRef lookup made while its message waits for a thread.

The lookup before a create (steps.py) is a third API call in a row where a bare chain
makes two: with a fixed pool of threads, a third of the throughput at 50 ms. A worker
whose steps run in its own process (the threads pool) receives messages before a
thread is free to run them; this looks their keys up in the meantime, in the
background, several per search, so the create that then runs finds the answer ready.

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
from cardload.pipeline.lookups import MAX_KEYS, MAX_QUERY_CHARS, TimedSearch, query_chars
from cardload.secuconnect import SecuconnectError, SmartTransaction

log = get_logger(__name__)

MAX_KEPT = 4096  # answers waiting for their create; the oldest go first
# Below this a search costs a create little wall time, and looking ahead costs CPU (a
# read of the record, searches of fewer keys): the sandbox next door, not the real API.
WORTH_S = 0.02
GATHER_S = 0.005  # a batch of messages arrives within this; their lookups go as one
# An answer older than this is not used: the create looks up again. The older the
# answer, the longer the window in which an earlier load's create still in flight (its
# record lost with a Redis) can land unseen and leave a second, never started,
# transaction under the key; looked up after the claim, that window is the lookup's.
MAX_AGE_S = 2.0


class LookupPrefetch:
    """Thread-safe; one background thread, started on the first :meth:`submit`."""

    def __init__(self, store: JobStore, search: TimedSearch, *, enabled: bool = True) -> None:
        self._store = store
        self._search = search
        self._enabled = enabled  # only where every create looks up (create_lookup=always)
        self._lock = threading.Condition()
        self._wanted: list[str] = []
        self._unanswered: set[str] = set()  # submitted, not yet answered
        self._found: OrderedDict[str, tuple[float, list[SmartTransaction]]] = OrderedDict()
        self._thread: threading.Thread | None = None

    def submit(self, job_id: str) -> None:
        """Look ``job_id``'s key up soon (a create message for it was received), unless
        searches answer so fast that looking up on the create's path costs little."""
        if not self._enabled or self._search.typical_s < WORTH_S:
            return
        with self._lock:
            if not self._alive():
                thread = threading.Thread(target=self._run, name="cardload-lookahead", daemon=True)
                thread.start()  # if it cannot start, nothing is waited for: all look up
                self._thread = thread
            self._wanted.append(job_id)
            self._unanswered.add(job_id)
            self._lock.notify()

    def take(self, job_id: str, wait_s: float) -> list[SmartTransaction] | None:
        """The transactions found under the job's key, if looked up ahead and not too
        long ago (waiting up to ``wait_s`` for a lookup under way); each answer is given
        once. None: look up now."""
        deadline = time.monotonic() + wait_s
        with self._lock:
            while job_id in self._unanswered and self._alive():
                left = deadline - time.monotonic()
                if left <= 0 or not self._lock.wait(left):
                    break
            found = self._found.pop(job_id, None)
        if found is None or time.monotonic() - found[0] > MAX_AGE_S:
            return None
        return found[1]

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._wanted:
                    self._lock.wait()
            time.sleep(GATHER_S)  # let the messages received with this one join it
            with self._lock:
                wanted, self._wanted = self._wanted[:MAX_KEYS], self._wanted[MAX_KEYS:]
            try:
                self._look_up(wanted)
            except Exception as exc:  # the create looks up for itself
                log.info("lookahead.failed", error=str(exc), jobs=len(wanted))
            finally:
                with self._lock:
                    self._unanswered.difference_update(wanted)
                    self._lock.notify_all()

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
                self._found[job_id] = (asked, found.get(key, []))
            while len(self._found) > MAX_KEPT:
                self._found.popitem(last=False)
