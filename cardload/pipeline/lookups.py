"""The merchantRef lookups of a worker process's create steps, several in one search.

Every create looks its key up first (steps.py says why), which would make it three API
calls per card load where a bare chain makes two. Creates that ask while a lookup is
in flight wait for it to answer and then go together in the next search
(``{merchantRef:"a"} OR {merchantRef:"b"}``), as a database groups the commits that
arrive during a flush: one at a time costs one search each, as before, and no one
waits for a timer. A caller's key is only ever in a search sent after it asked, so
the answer is as fresh as a lookup of its own. A key with ``*`` or ``?`` (which
matches other keys) is looked up alone.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence

from cardload.secuconnect import SmartTransaction

Search = Callable[[Sequence[str]], dict[str, list[SmartTransaction]]]

MAX_KEYS = 20  # per search
MAX_QUERY_CHARS = 1500  # of keys per search: the query travels in the URL


class _Waiter:
    __slots__ = ("done", "error", "key", "lead", "result", "woken")

    def __init__(self, key: str) -> None:
        self.key = key
        self.woken = threading.Event()
        self.lead = False  # woken to send the next search
        self.done = False
        self.result: list[SmartTransaction] = []
        self.error: BaseException | None = None


class MerchantRefLookups:
    """Thread-safe: one per process, shared by every step."""

    def __init__(self, search: Search) -> None:
        self._search = search
        self._lock = threading.Lock()
        self._pending: list[_Waiter] = []
        self._busy = False  # a thread is sending a search

    def find(self, key: str) -> list[SmartTransaction]:
        """The transactions whose merchantRef is exactly ``key``, oldest first."""
        if "*" in key or "?" in key:
            return self._search([key])[key]
        me = _Waiter(key)
        with self._lock:
            self._pending.append(me)
            me.lead = not self._busy
            self._busy = True
        if not me.lead:
            me.woken.wait()
        if not me.done:
            self._lead(me)
        if me.error is not None:
            raise me.error
        return me.result

    def _lead(self, me: _Waiter) -> None:
        """Send searches for the waiting keys until ``me``'s is answered, then pass the
        lead to the next waiter, if any."""
        try:
            while not me.done:
                with self._lock:
                    batch = self._take()
                self._answer(batch)
        finally:
            with self._lock:
                if self._pending:
                    successor = self._pending[0]
                    successor.lead = True
                    successor.woken.set()
                else:
                    self._busy = False

    def _take(self) -> list[_Waiter]:
        batch: list[_Waiter] = []
        chars = 0
        for waiter in self._pending:
            if batch and (len(batch) >= MAX_KEYS or chars + len(waiter.key) > MAX_QUERY_CHARS):
                break
            batch.append(waiter)
            chars += len(waiter.key)
        del self._pending[: len(batch)]
        return batch

    def _answer(self, batch: list[_Waiter]) -> None:
        try:
            found = self._search([waiter.key for waiter in batch])
        except BaseException as exc:
            for waiter in batch:
                waiter.error = _own_copy(exc)
                self._finish(waiter)
            if not isinstance(exc, Exception):
                raise  # the process is going down
            return
        for waiter in batch:
            waiter.result = found.get(waiter.key, [])
            self._finish(waiter)

    @staticmethod
    def _finish(waiter: _Waiter) -> None:
        waiter.done = True
        waiter.woken.set()


def _own_copy(exc: BaseException) -> BaseException:
    """Each caller raises its own copy: one exception object raised in many threads
    would gather all their tracebacks."""
    try:
        own = copy.copy(exc).with_traceback(None)
    except Exception:
        return exc
    own.__cause__, own.__context__ = exc.__cause__, exc.__context__
    return own
