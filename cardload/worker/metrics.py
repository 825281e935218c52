"""Serving cardload's metrics: the process's own counters (``observability.metrics``)
and gauges read at each scrape from Redis and the broker.

The gauges are facts of the whole system (messages waiting in the queue, dead
letters, jobs not yet finished), the same in every process that serves them: aggregate
them with ``max()``. A scrape that cannot reach Redis or the broker leaves the gauge
out (Prometheus then shows it absent, which the "no progress" alert treats as
unknown) instead of failing the scrape of everything else.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from celery import Celery
from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cardload.config import Settings
from cardload.jobs import keys
from cardload.jobs.connection import connect
from cardload.observability import get_logger
from cardload.observability.metrics import (
    DEAD_LETTERS,
    JOBS_ACTIVE,
    QUEUE_DEPTH,
    REGISTRY,
)

log = get_logger(__name__)


class SystemGauges(Collector):
    """Queue depth, dead letters and unfinished jobs, read when scraped."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self._app = app
        self._settings = settings
        self._redis = connect(settings.redis_url, socket_timeout=5)
        self._lock = threading.Lock()  # one broker connection, scrapes one at a time
        self._broker: Any = None

    def describe(self) -> Iterable[Any]:
        return []  # read at scrape time only: never while registering

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue = self._settings.jobs.queue
        depth = self._queue_depth(queue)
        if depth is not None:
            family = GaugeMetricFamily(
                QUEUE_DEPTH, "Messages waiting in the broker's queue.", labels=["queue"]
            )
            family.add_metric([queue], depth)
            yield family
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.zcard(self._settings.events.dead_letters)
                pipe.zcard(keys.ACTIVE)
                dead, active = pipe.execute()
        except redis.RedisError as exc:
            log.warning("metrics.redis_unreadable", error=str(exc))
            return
        yield GaugeMetricFamily(DEAD_LETTERS, "Dead letters waiting for a person.", value=dead)
        yield GaugeMetricFamily(
            JOBS_ACTIVE, "Jobs admitted and not yet finished (queued or running).", value=active
        )

    def _queue_depth(self, queue: str) -> int | None:
        """Messages waiting, by the broker's own count (a passive declare: kombu sums the
        priority lists on Redis; RabbitMQ answers its queue's ready messages)."""
        with self._lock:
            try:
                if self._broker is None:
                    self._broker = self._app.connection_for_read()
                channel = self._broker.default_channel
                return int(channel.queue_declare(queue=queue, passive=True).message_count)
            except Exception as exc:  # a broker down must not fail the whole scrape
                log.warning("metrics.broker_unreadable", error=str(exc))
                if self._broker is not None:
                    self._broker.release()
                self._broker = None
                return None


_lock = threading.Lock()
_gauges: list[SystemGauges] = []
_served: set[tuple[str, int]] = set()


def register_gauges(app: Celery, settings: Settings) -> None:
    """Add the gauges read at scrape time to cardload's registry, once per process."""
    with _lock:
        if not _gauges:
            _gauges.append(SystemGauges(app, settings))
            REGISTRY.register(_gauges[0])


def serve_metrics(app: Celery, settings: Settings, host: str, port: int) -> None:
    """Serve cardload's registry on ``host:port`` (``/metrics``) from a daemon thread,
    once per process and address."""
    register_gauges(app, settings)
    with _lock:
        if (host, port) in _served:
            return
        start_http_server(port, addr=host, registry=REGISTRY)
        _served.add((host, port))
    log.info("metrics.serving", host=host, port=port)
