"""The merchantRef lookups of a worker process's create steps, several in one search.

Every create looks its key up first (steps.py says why), which would make it three API
calls per card load where a bare chain makes two. At most ``MAX_IN_FLIGHT`` searches
are sent at once; creates that ask while they are all in flight wait for one to
answer and then go together in the next search (``{merchantRef:"a"} OR
{merchantRef:"b"}``), as a database groups the commits that arrive during a flush.
One at a time, each lookup is its own search, sent at once: no one waits for a timer.
A caller's key is only ever in a search sent after it asked, so the answer is as
fresh as a lookup of its own. A key with ``*`` or ``?`` (which matches other keys) is
looked up alone, and so is each key of a search the API refused (one key may have
been the cause).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from urllib.parse import quote

from cardload.secuconnect import PermanentError, SmartTransaction

Search = Callable[[Sequence[str]], dict[str, list[SmartTransaction]]]

MAX_KEYS = 20  # per search
MAX_IN_FLIGHT = 2  # searches at once; more callers wait and go together
# The query travels in the URL, percent-encoded: 4,000 characters of it keeps the request
# line well inside the 8 KB many gateways allow. A longer key is searched alone.
MAX_QUERY_CHARS = 4000


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

    def __init__(self, search: Search, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self._search = search
        self._max_in_flight = max_in_flight
        self._lock = threading.Lock()
        # Waiters wait only while every slot is taken: a slot that frees goes to the
        # first of them, so a new caller that finds a free slot finds no one waiting.
        self._pending: list[_Waiter] = []
        self._in_flight = 0  # threads sending a search

    def find(self, key: str) -> list[SmartTransaction]:
        """The transactions whose merchantRef is exactly ``key``, oldest first."""
        if "*" in key or "?" in key:
            return self._search([key])[key]
        me = _Waiter(key)
        with self._lock:
            self._pending.append(me)
            me.lead = self._in_flight < self._max_in_flight
            if me.lead:
                self._in_flight += 1
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
                    self._in_flight -= 1

    def _take(self) -> list[_Waiter]:
        batch: list[_Waiter] = []
        chars = 0
        for waiter in self._pending:
            size = query_chars(waiter.key)
            if batch and (len(batch) >= MAX_KEYS or chars + size > MAX_QUERY_CHARS):
                break
            batch.append(waiter)
            chars += size
        del self._pending[: len(batch)]
        return batch

    def _answer(self, batch: list[_Waiter]) -> None:
        try:
            found = self._search([waiter.key for waiter in batch])
        except PermanentError as exc:
            if len(batch) == 1:
                self._fail(batch, exc)
                return
            # A refusal may be one key's doing (one that matches too much): each alone,
            # so that only its own job sees it. A failure of the API itself is not
            # repeated key by key.
            for waiter in batch:
                self._answer([waiter])
            return
        except BaseException as exc:
            self._fail(batch, exc)
            if not isinstance(exc, Exception):
                raise  # the process is going down
            return
        for waiter in batch:
            waiter.result = found.get(waiter.key, [])
            self._finish(waiter)

    def _fail(self, batch: list[_Waiter], exc: BaseException) -> None:
        for waiter in batch:
            waiter.error = _own_copy(exc)
            self._finish(waiter)

    @staticmethod
    def _finish(waiter: _Waiter) -> None:
        waiter.done = True
        waiter.woken.set()


def _own_copy(exc: BaseException) -> BaseException:
    """Each caller raises its own copy: one exception object raised in many threads
    would gather all their tracebacks. Made without calling ``__init__`` (whose
    arguments an exception need not keep)."""
    own = type(exc).__new__(type(exc), *exc.args)
    own.__dict__.update(exc.__dict__)
    own.__cause__, own.__context__ = exc.__cause__, exc.__context__
    return own


def query_chars(key: str) -> int:
    """What a key adds to the search's query in the URL, percent-encoded."""
    return len(quote(f'{{merchantRef:""}} OR {key}', safe=""))
