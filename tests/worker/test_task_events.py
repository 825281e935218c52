"""The worker's task events are flushed together, at most every FLUSH_EVERY_S: none
is lost or held back, and a burst goes out in few messages."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest

from cardload.jobs import Admission, CardLoadJob, JobStatus
from cardload.sandbox import SEED_CARD
from cardload.tasks.card_load import TASK_EVENTS
from cardload.worker.task_events import (
    EVENTS_PER_MESSAGE,
    STALE_S,
    CoalescedFlush,
    TaskEvents,
)
from tests.services import wait_for
from tests.worker.conftest import Stack


class Hub:
    """The part of kombu's hub a flush uses: callbacks run when the test says."""

    def __init__(self) -> None:
        self.soon: list[Callable[[], None]] = []
        self.later: list[tuple[float, Callable[[], None]]] = []

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.soon.append(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.later.append((delay, callback))

    def run_soon(self) -> None:
        while self.soon:
            self.soon.pop(0)()

    def fire(self) -> None:
        while self.later:
            self.later.pop(0)[1]()


class Consumer:
    def __init__(self) -> None:
        self.hub = Hub()
        self.flushes = 0

    def _flush_events(self) -> None:
        self.flushes += 1


def test_a_lone_event_goes_out_at_once_and_a_burst_waits_for_the_interval() -> None:
    consumer = Consumer()
    flush = CoalescedFlush(consumer, interval=0.05)
    flush()
    consumer.hub.run_soon()
    assert consumer.flushes == 1 and not consumer.hub.later  # nothing flushed lately
    for _ in range(100):  # a burst, from any threads
        flush()
    assert len(consumer.hub.soon) == 1  # one flush asked for, whatever the count
    consumer.hub.run_soon()
    assert consumer.flushes == 1  # within the interval of the last flush: it waits
    [(delay, _)] = consumer.hub.later
    assert 0 < delay <= 0.05
    consumer.hub.fire()
    assert consumer.flushes == 2
    flush()  # an event after that flush asks for the next one
    assert len(consumer.hub.soon) == 1


def test_an_event_buffered_during_a_flush_asks_for_another() -> None:
    consumer = Consumer()
    flush = CoalescedFlush(consumer, interval=0.0)

    def flush_events() -> None:
        consumer.flushes += 1
        if consumer.flushes == 1:
            flush()  # a pool thread buffers an event while the flush publishes

    consumer._flush_events = flush_events  # type: ignore[method-assign]
    flush()
    consumer.hub.run_soon()
    assert consumer.flushes == 2  # the second one was asked for, and ran


def test_a_flush_asked_for_and_lost_is_asked_for_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub reset with a broken connection drops its timer entries: the next event
    after STALE_S asks again rather than waiting forever."""
    consumer = Consumer()
    flush = CoalescedFlush(consumer)
    clock = [1000.0]
    monkeypatch.setattr("cardload.worker.task_events.time.monotonic", lambda: clock[0])
    flush()
    consumer.hub.soon.clear()  # lost
    flush()
    assert not consumer.hub.soon
    clock[0] += STALE_S + 0.1
    flush()
    assert len(consumer.hub.soon) == 1


def test_a_failing_flush_is_logged_and_the_next_one_still_runs() -> None:
    consumer = Consumer()
    flush = CoalescedFlush(consumer, interval=0.0)
    calls = Counter[str]()

    def flush_events() -> None:
        calls["flush"] += 1
        if calls["flush"] == 1:
            raise ConnectionError("broker gone")

    consumer._flush_events = flush_events  # type: ignore[method-assign]
    flush()
    consumer.hub.run_soon()
    flush()
    consumer.hub.run_soon()
    assert calls["flush"] == 2


def test_the_step_lets_an_intervals_events_wait_past_celerys_24() -> None:
    dispatcher = SimpleNamespace(on_send_buffered=lambda: None, buffer_limit=24)
    consumer = SimpleNamespace(event_dispatcher=dispatcher, hub=Hub(), app=SimpleNamespace())
    TaskEvents(cast(Any, SimpleNamespace())).start(consumer)
    assert isinstance(dispatcher.on_send_buffered, CoalescedFlush)
    assert dispatcher.buffer_limit == EVENTS_PER_MESSAGE > 24
    pid, events, _ = getattr(consumer.app, TASK_EVENTS)
    assert pid == os.getpid() and events is dispatcher


def test_every_task_event_of_a_real_worker_arrives_in_few_messages(running: Stack) -> None:
    app = running.producer.app
    kinds = ("task-sent", "task-received", "task-started", "task-succeeded")
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    def keep(event: dict[str, Any]) -> None:
        with lock:
            seen.append(event)

    patterns = running.redis.pubsub_numpat()  # other tests' may linger a moment
    raw: Any = cast(Any, running.redis).pubsub()
    raw.psubscribe("*celeryev/task.multi")
    jobs = [
        CardLoadJob(idempotency_key=f"events-{i}", card_number=SEED_CARD, amount_cents=100)
        for i in range(40)
    ]
    with app.connection_for_read() as conn:
        receiver: Any = app.events.Receiver(conn, handlers=dict.fromkeys(kinds, keep))
        listening = threading.Thread(target=lambda: receiver.capture(wakeup=False))
        listening.start()
        try:
            wait_for(
                lambda: running.redis.pubsub_numpat() >= patterns + 2,
                10,
                "the receiver to subscribe",
            )
            for admitted in running.producer.enqueue_many(jobs):
                assert isinstance(admitted, Admission)
                assert running.finished(admitted.job_id).status is JobStatus.SUCCEEDED

            def every_event() -> Counter[tuple[str, str]] | None:
                with lock:
                    counts = Counter((e["type"], e.get("uuid", "")) for e in seen)
                by_kind = Counter(kind for kind, _ in counts)
                # Two tasks per job; the creates' task-sent events are the producer's.
                wanted = {"task-sent": 80, "task-received": 80, "task-started": 80}
                done = all(by_kind[k] >= n for k, n in wanted.items())
                return counts if done and by_kind["task-succeeded"] >= 80 else None

            try:
                counts = wait_for(every_event, 30, "every task event")
            except TimeoutError:
                with lock:
                    print(Counter(e["type"] for e in seen))
                running.print_logs()
                raise
        finally:
            receiver.should_stop = True
            listening.join(10)
    messages = 0
    while (message := raw.get_message(timeout=0.5)) is not None:
        messages += message["type"] == "pmessage"
    raw.close()
    # Each task's events exactly once: none lost, none sent twice.
    assert set(counts.values()) == {1}
    tasks = {uuid for (kind, uuid) in counts if kind == "task-received"}
    assert len(tasks) == 80 and {uuid for (_, uuid) in counts} == tasks
    # Celery's own flushing: one message per event or two (about 290 here). Besides the
    # worker's, the producer's batch sends its 40 task-sent events in one message.
    events = sum(counts.values())
    assert events == 320
    assert messages * 4 <= events, f"{messages} messages for {events} events"


def test_a_real_workers_create_pushes_the_start_in_its_script(running: Stack) -> None:
    """On a Redis broker that is the job store's Redis, the start's message is pushed by
    the script that ends the create (MONITOR names the caller of each command)."""
    seen: list[dict[str, Any]] = []
    done = threading.Event()
    client: Any = running.redis  # redis-py's monitor() is untyped

    def watch() -> None:
        with client.monitor() as monitor:
            while not done.is_set():
                seen.append(monitor.next_command())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        wait_for(lambda: "monitor" in str(client.client_list()), 10, "MONITOR to start")
        job = CardLoadJob(idempotency_key="pushed-1", card_number=SEED_CARD, amount_cents=100)
        job_id = running.producer.enqueue(job)
        assert running.finished(job_id).status is JobStatus.SUCCEEDED
    finally:
        done.set()
        client.ping()  # the monitor's next command, so its thread can stop
        watcher.join(10)
    pushes = [c for c in seen if c["command"].startswith("LPUSH ")]
    from_scripts = [c for c in pushes if c.get("client_type") == "lua"]
    assert len(from_scripts) == 1 and "cardload.start" in from_scripts[0]["command"]
    assert job_id in from_scripts[0]["command"]  # its argsrepr
