"""A create's merchantRef lookup made while its message waits for a thread.

The lookup before a create (steps.py) is a third API call in a row where a bare chain
makes two: with a fixed pool of threads, a third of the throughput at 50 ms. A worker
whose steps run in its own process (the threads pool) receives messages before a
thread is free to run them; this looks their keys up in the meantime, in the
background, several per search, so the create that then runs finds the answer ready.

Used only on a job's first attempt, and only when the record shows no doubt: any
lookup made after the job was admitted finds what an earlier load under its key left
(the case the lookup is for: a Redis that lost the record), and a transaction created
after the lookup cannot be started by anyone (its creator's writes are fenced off by
the claim). After a retry, a replay or a takeover the step looks up again, fresh: an
ambiguous create of the attempt before may land late.
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
MAX_AGE_S = 60.0  # an answer older than this is not used (the message waited long)


class LookupPrefetch:
    """Thread-safe; one background thread, started on the first :meth:`submit`."""

    def __init__(self, store: JobStore, search: TimedSearch) -> None:
        self._store = store
        self._search = search
        self._lock = threading.Condition()
        self._wanted: list[str] = []
        self._unanswered: set[str] = set()  # submitted, not yet answered
        self._found: OrderedDict[str, tuple[float, list[SmartTransaction]]] = OrderedDict()
        self._thread: threading.Thread | None = None

    def submit(self, job_id: str) -> None:
        """Look ``job_id``'s key up soon (a create message for it was received), unless
        searches answer so fast that looking up on the create's path costs little."""
        if self._search.typical_s < WORTH_S:
            return
        with self._lock:
            self._wanted.append(job_id)
            self._unanswered.add(job_id)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="cardload-lookahead", daemon=True
                )
                self._thread.start()
            self._lock.notify()

    def take(self, job_id: str, wait_s: float) -> list[SmartTransaction] | None:
        """The transactions found under the job's key, if looked up ahead and not too
        long ago (waiting up to ``wait_s`` for a lookup under way); each answer is given
        once. None: look up now."""
        deadline = time.monotonic() + wait_s
        with self._lock:
            while job_id in self._unanswered:
                left = deadline - time.monotonic()
                if left <= 0 or not self._lock.wait(left):
                    break
            found = self._found.pop(job_id, None)
        if found is None or time.monotonic() - found[0] > MAX_AGE_S:
            return None
        return found[1]

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
