"""Steps sent in batches: every message in the queue, and one task-sent event per
message reaches an event receiver (what Flower runs), in task.multi batches."""

from __future__ import annotations

import json
import os
import threading
from base64 import b64decode
from types import SimpleNamespace
from typing import Any, cast

import redis

from cardload.tasks.card_load import TASK_EVENTS, Handoff, send_next
from cardload.worker import create_app
from cardload.worker.dispatch import BATCH_SIZE, Dispatch, send_steps
from tests.services import wait_for
from tests.support import make_settings, queued


def test_every_step_sent_is_queued_and_seen_sent(redis_url: str, real_redis: redis.Redis) -> None:
    app = create_app(make_settings(redis_url, "http://sandbox.test"))
    count = 2 * BATCH_SIZE + 7  # three batches, the last one partial
    items = [Dispatch("create", f"job-{i}", f"card=927600******{i:04d}") for i in range(count)]
    seen: list[dict[str, Any]] = []
    raw: Any = cast(Any, real_redis).pubsub()
    raw.psubscribe("*celeryev*")
    with app.connection_for_read() as conn:
        receiver: Any = app.events.Receiver(conn, handlers={"task-sent": seen.append})
        listening = threading.Thread(target=lambda: receiver.capture(wakeup=False))
        listening.start()
        try:
            wait_for(lambda: real_redis.pubsub_numpat() > 1, 10, "the receiver to subscribe")
            send_steps(app, items, "cardload")
            wait_for(lambda: len(seen) >= count, 20, "every task-sent event")
        finally:
            receiver.should_stop = True
            listening.join(10)
    published = []
    while (message := raw.get_message(timeout=0.5)) is not None:
        if message["type"] == "pmessage":
            published.append(message["channel"])
    raw.close()
    assert published == [b"/0.celeryev/task.multi"] * 3  # one event message per batch
    messages = [json.loads(m) for m in queued(real_redis)]
    assert len(messages) == count
    # Protocol 2's required headers; its optional ones only where set (memory per job).
    headers = messages[0]["headers"]
    assert {"lang", "task", "id", "root_id", "parent_id", "group"} <= set(headers)
    assert not {"shadow", "expires", "timelimit", "stamps", "stamped_headers"} & set(headers)
    ids = {m["headers"]["id"] for m in messages}
    assert {json.loads(b64decode(m["body"]))[0][0] for m in messages} == {i.job_id for i in items}
    assert len(seen) == count and {e["uuid"] for e in seen} == ids
    assert all(e["name"] == "cardload.create" and e["queue"] == "cardload" for e in seen)
    assert "('job-5', card=927600******0005)" in {e["args"] for e in seen}


def test_a_start_is_taken_before_every_queued_create(
    redis_url: str, real_redis: redis.Redis
) -> None:
    """Without it a job's start waits behind a whole batch's creates, its transaction
    created and unpaid all that time."""
    app = create_app(make_settings(redis_url, "http://sandbox.test"))
    send_steps(app, [Dispatch("create", f"job-{i}") for i in range(50)], "cardload")
    send_steps(app, [Dispatch("start", "job-started")], "cardload")
    with app.connection_for_read() as conn, conn.SimpleQueue("cardload") as simple:
        first = simple.get(timeout=5)
        second = simple.get(timeout=5)
        taken = [m.headers["task"] for m in (first, second)]
        for message in (first, second):
            message.requeue()
    assert taken == ["cardload.start", "cardload.create"]
    assert len(queued(real_redis)) == 51


def test_a_step_sends_its_next_one_with_its_workers_events_only(
    redis_url: str, real_redis: redis.Redis
) -> None:
    """In the worker's own process the next step's task-sent event joins the consumer's
    buffered events; a prefork child, which inherits the attribute, must not touch its
    parent's dispatcher and sends the Celery way."""
    app = create_app(make_settings(redis_url, "http://sandbox.test"))
    sent: list[Any] = []

    class Dispatcher:
        def send(self, kind: str, **fields: Any) -> None:
            sent.append((kind, fields))

    task: Any = SimpleNamespace(app=app, request=SimpleNamespace(id="t-1", root_id=None))
    setattr(app, TASK_EVENTS, (os.getpid() + 1, Dispatcher(), None))  # a parent's
    send_next(task, "start", "job-in-child")
    assert sent == [] and len(queued(real_redis)) == 1
    setattr(app, TASK_EVENTS, (os.getpid(), Dispatcher(), None))
    send_next(task, "start", "job-in-worker")
    [(kind, fields)] = sent
    assert kind == "task-sent" and fields["parent_id"] == "t-1" and fields["root_id"] == "t-1"
    assert len(queued(real_redis)) == 2


def test_a_next_message_that_cannot_be_built_is_left_to_the_task() -> None:
    """Building the message for the script is never the step's failure: the step ends
    without it (not queued), and the task sends the next step through kombu."""
    sent: list[Any] = []

    class Broken:
        def prepare(self, step: Any, job_id: str, *, parent: Any = None) -> Any:
            raise RuntimeError("kombu changed under us")

    class Dispatcher:
        def send(self, kind: str, **fields: Any) -> None:
            sent.append(kind)

    app = create_app(make_settings("redis://unused", "http://sandbox.test"))
    setattr(app, TASK_EVENTS, (os.getpid(), Dispatcher(), Broken()))
    handoff = Handoff(Broken(), app, SimpleNamespace(id="t-1", root_id=None))
    assert handoff.message("start", "job-1") is None
    handoff.announce()
    assert sent == []  # nothing was pushed: no task-sent event for it either


def test_a_pushed_steps_event_goes_to_the_dispatcher_of_when_it_is_sent() -> None:
    """A consumer that restarts during a step gets a new event dispatcher (the old one is
    disabled): the task-sent event of the message pushed meanwhile goes to the new one."""
    app = create_app(make_settings("redis://unused", "http://sandbox.test"))
    old: list[str] = []
    new: list[str] = []

    class Dispatcher:
        def __init__(self, into: list[str]) -> None:
            self.into = into

        def send(self, kind: str, **fields: Any) -> None:
            self.into.append(fields["uuid"])

    class Pusher:
        def prepare(self, step: Any, job_id: str, *, parent: Any = None) -> Any:
            return "list", "message", {"uuid": f"{step}-{job_id}"}

    setattr(app, TASK_EVENTS, (os.getpid(), Dispatcher(old), Pusher()))
    task: Any = SimpleNamespace(app=app, request=SimpleNamespace(id="t-1", root_id=None))
    handoff = Handoff.of(task)
    assert handoff is not None and handoff.message("start", "job-1") == ("list", "message")
    setattr(app, TASK_EVENTS, (os.getpid(), Dispatcher(new), Pusher()))  # restarted
    handoff.announce()
    assert old == [] and new == ["start-job-1"]
