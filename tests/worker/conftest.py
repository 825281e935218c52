"""End-to-end fixtures: our own redis-server, the sandbox over HTTP, real worker processes."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from cardload.config import Settings, to_env
from cardload.events import EventStream
from cardload.jobs import JobRecord, JobStore, job_store
from cardload.producers.enqueue import CardLoadProducer
from cardload.sandbox import FaultSettings, SandboxApp, serve_in_thread
from cardload.worker import create_app
from tests.services import WorkerProcess, wait_for
from tests.support import make_settings


@dataclass
class Stack:
    sandbox: SandboxApp
    sandbox_url: str
    settings: Settings
    redis: redis.Redis
    producer: CardLoadProducer
    events: EventStream
    tmp_path: Path
    workers: list[WorkerProcess]

    @property
    def store(self) -> JobStore:
        return self.producer.store

    @property
    def env(self) -> dict[str, str]:
        return to_env(self.settings)

    def faults(self, *rules: dict[str, Any]) -> None:
        self.sandbox.faults.configure(FaultSettings.model_validate({"rules": list(rules)}))

    def start_worker(self, *extra: str, settings: Settings | None = None) -> WorkerProcess:
        log = self.tmp_path / f"worker-{len(self.workers)}.log"
        worker = WorkerProcess(settings or self.settings, "--concurrency=8", *extra, log_path=log)
        self.workers.append(worker)
        return worker

    def finished(self, job_id: str, timeout_s: float = 60) -> JobRecord:
        def done() -> JobRecord | None:
            record = self.store.load(job_id)
            return record if record and record.status.terminal else None

        try:
            return wait_for(done, timeout_s, f"job {job_id} to finish")
        except (AssertionError, TimeoutError):
            self.print_logs()
            raise

    def print_logs(self) -> None:
        for worker in self.workers:
            print(f"--- {worker.log_path.name}\n{worker.log()[-6000:]}")

    def events_for(self, job_id: str) -> list[Any]:
        return [e.event for e in self.events.read() if e.event.job_id == job_id]

    def published(self, job_id: str, count: int = 1) -> list[Any]:
        def enough() -> list[Any] | None:
            found = self.events_for(job_id)
            return found if len(found) >= count else None

        return wait_for(enough, 30, f"{count} event(s) of job {job_id}")

    def ledger(self, card: str | None = None) -> list[dict[str, Any]]:
        with httpx.Client(base_url=self.sandbox_url) as http:
            entries: list[dict[str, Any]] = http.get(
                "/_sandbox/ledger", params={"card": card} if card else {}
            ).json()
            return entries


AMQP = "amqp://guest:guest@127.0.0.1:5672"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def _make_vhost() -> str:
    name = f"cardload-test-{uuid.uuid4().hex[:12]}"
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    except subprocess.CalledProcessError:
        _rabbitmqctl("delete_vhost", name)
        raise
    return name


class Vhosts:
    """Vhosts of our own on the machine's RabbitMQ, made one ahead and deleted behind,
    in a thread: each ``rabbitmqctl`` call boots an Erlang VM (about a second), three per
    test. ``close`` deletes every one it made, the spare too."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vhosts")
        self._next: Future[str] | None = None
        self._deleted: list[Future[None]] = []

    def take(self) -> str:
        upcoming = self._next or self._pool.submit(_make_vhost)
        self._next = self._pool.submit(_make_vhost)
        return upcoming.result()

    def give_back(self, name: str) -> None:
        self._deleted.append(self._pool.submit(_rabbitmqctl, "delete_vhost", name))

    def close(self) -> None:
        if self._next is not None:
            spare = self._next.exception() is None and self._next.result()
            if spare:
                self.give_back(spare)
        self._pool.shutdown(wait=True)
        for deleted in self._deleted:
            deleted.result()  # a vhost left behind fails the run here


@pytest.fixture(scope="session")
def vhosts() -> Iterator[Vhosts]:
    made = Vhosts()
    try:
        yield made
    finally:
        made.close()


@contextmanager
def rabbitmq_vhost(vhosts: Vhosts) -> Iterator[str]:
    """A vhost of our own on the machine's RabbitMQ: the queues and exchanges a test
    makes go with it."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on this machine")
    try:
        name = vhosts.take()
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot make a RabbitMQ vhost: {exc.stderr.decode()[-200:]}")
    try:
        yield name
    finally:
        vhosts.give_back(name)


@pytest.fixture
def broker_kind() -> str:
    """The stack's broker: Redis; a module overrides this fixture to run on RabbitMQ too."""
    return "redis"


@pytest.fixture
def broker_url(broker_kind: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    if broker_kind == "redis":
        yield None  # the job store's Redis
        return
    with rabbitmq_vhost(request.getfixturevalue("vhosts")) as vhost:
        yield f"{AMQP}/{vhost}"


@pytest.fixture
def stack(
    real_redis: redis.Redis, redis_url: str, tmp_path: Path, broker_url: str | None
) -> Iterator[Stack]:
    app = SandboxApp()
    with serve_in_thread(app) as server:
        settings = make_settings(redis_url, server.url, retry={"max_backoff_s": 2.0})
        if broker_url:
            settings = settings.model_copy(update={"broker_url": broker_url})
        producer = CardLoadProducer(create_app(settings), job_store(real_redis, settings), settings)
        events = EventStream(real_redis, settings.events.stream)
        built = Stack(app, server.url, settings, real_redis, producer, events, tmp_path, [])
        try:
            yield built
        finally:
            for worker in built.workers:
                worker.stop()


@pytest.fixture
def running(stack: Stack) -> Stack:
    """The stack with one worker running."""
    stack.start_worker()
    return stack


JobFactory = Callable[..., str]
