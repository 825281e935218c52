"""The worker's task events (for Flower): the steps' ``task-sent`` events join the
consumer's buffer, and the buffer goes out at most every ``FLUSH_EVERY_S``.

Celery flushes its buffer of task events after every event a task sends: the hub is
woken from the pool thread (a pipe write) and publishes the one or two events that
are there, one ``PUBLISH`` each time, about three per card load. Flushed together,
the same events go out in one message per interval (``task.multi``, which Flower
reads), up to ``EVENTS_PER_MESSAGE`` (Celery's own limit is 24); alone, an event still
goes out at once. A monitor sees an event at most ``FLUSH_EVERY_S`` later; nothing else
reads them.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from celery import bootsteps

from cardload.observability import get_logger
from cardload.tasks.card_load import TASK_EVENTS
from cardload.worker.redis_broker import step_pusher

log = get_logger(__name__)

FLUSH_EVERY_S = 0.05
# Past this many buffered events, the thread that sends the next one flushes them.
EVENTS_PER_MESSAGE = 1000
# A flush asked for and not done after this long is asked for again (the hub's timer
# can be reset with a broken connection, and its entry with it).
STALE_S = 2.0


class CoalescedFlush:
    """The dispatcher's ``on_send_buffered``: called by any thread after an event was
    buffered; the flush itself runs in the hub's thread, at most every ``interval``."""

    def __init__(self, consumer: Any, interval: float = FLUSH_EVERY_S) -> None:
        self.consumer = consumer
        self.interval = interval
        self.last = 0.0
        self.asked_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self.asked_at is not None and now - self.asked_at < STALE_S:
                return  # a flush is coming: it takes this event too
            self.asked_at = now
        self.consumer.hub.call_soon(self._schedule)

    def _schedule(self) -> None:  # in the hub's thread, where its timer may be used
        wait = self.last + self.interval - time.monotonic()
        if wait <= 0:
            self._flush()
        else:
            self.consumer.hub.call_later(wait, self._flush)

    def _flush(self) -> None:
        # Cleared before the flush: an event buffered while it runs asks for the next.
        with self._lock:
            self.asked_at = None
        self.last = time.monotonic()
        try:
            self.consumer._flush_events()
        except Exception as exc:  # monitoring only: never the hub's loop
            log.warning("task_events.flush_failed", error=str(exc))


class TaskEvents(bootsteps.StartStopStep):
    """Coalesces the consumer's task event flushes, and hands its dispatcher to the
    tasks: a step's ``task-sent`` event for the next step is buffered with the worker's
    own task events, instead of one publish each."""

    requires = ("celery.worker.consumer.events:Events",)

    def start(self, c: Any) -> None:
        dispatcher = c.event_dispatcher
        if dispatcher is not None and c.hub is not None and dispatcher.on_send_buffered:
            dispatcher.on_send_buffered = CoalescedFlush(c)
            # Celery flushes in the sending thread once 24 wait; let an interval's wait.
            dispatcher.buffer_limit = max(dispatcher.buffer_limit, EVENTS_PER_MESSAGE)
        # With the process's pid: a prefork child inherits the attribute, and must not
        # use a dispatcher whose connection and flushing belong to its parent.
        # The pusher: the next step's message goes out with the script that ends a step.
        setattr(c.app, TASK_EVENTS, (os.getpid(), dispatcher, step_pusher(c.app)))

    def stop(self, c: Any) -> None:
        setattr(c.app, TASK_EVENTS, None)
        if c.event_dispatcher is not None:
            try:
                c.event_dispatcher.flush()  # what waited for the next interval
            except Exception as exc:
                log.warning("task_events.flush_failed", error=str(exc))

    shutdown = stop
