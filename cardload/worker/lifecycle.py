"""What a cardload worker does when it starts: check its settings (and stop, naming
what is missing), our logging, the stall sweeper, the metrics server
(``CARDLOAD_WORKER_METRICS_PORT``), the webhook delivery worker
(``CARDLOAD_WEBHOOKS_IN_WORKER``), the removal of 0.1's shared token, and the task events
step (``task_events``).

Hooked to Celery's ``celeryd_init`` for our app alone: only when a worker of that app
starts are the other signals connected. (A ``setup_logging`` receiver alone changes
how Celery sets up logging, so it must not exist in a host's worker.)
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import redis
from celery.signals import celeryd_init, setup_logging, task_received, worker_ready

from cardload.config import Settings, SettingsError
from cardload.jobs import keys
from cardload.jobs.connection import connect
from cardload.jobs.routing import TASK_NAMES
from cardload.observability import configure_logging, get_logger
from cardload.webhooks.delivery import start_deliverer
from cardload.worker.metrics import serve_metrics
from cardload.worker.sweeper import start_sweeper
from cardload.worker.task_events import TaskEvents

if TYPE_CHECKING:
    from cardload.worker.application import CardloadApp

log = get_logger(__name__)


def connect_worker_signals(app: CardloadApp) -> None:
    app.steps["consumer"].add(TaskEvents)

    def on_worker_init(instance: Any = None, **_: Any) -> None:
        if getattr(instance, "app", None) is app:
            _start_worker(app)

    # Kept alive by the app itself and connected weakly: an app that is dropped (a
    # producer made for one request) is collected with its hook.
    app.signal_hooks.append(on_worker_init)
    celeryd_init.connect(on_worker_init)


def _start_worker(app: CardloadApp) -> None:
    try:
        settings = app.cardload_settings
        settings.require_secuconnect()
    except SettingsError as exc:
        # Celery logs and swallows what a signal handler raises: stop here instead,
        # before the worker takes a single job it could not run.
        print(f"cardload worker: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc

    def logging_setup(**_: Any) -> None:
        configure_logging(settings.log.format, settings.log.level)

    def ready(sender: Any = None, **_: Any) -> None:
        _forget_shared_token(settings)
        if type(getattr(sender, "pool", None)).__module__ in _POOLS_IN_PROCESS:
            _warm_up(app)  # a prefork child builds its own, after the fork
        start_sweeper(app, settings)
        if settings.worker.metrics_port:
            serve_metrics(app, settings, settings.worker.metrics_host, settings.worker.metrics_port)
        if settings.webhooks.in_worker:
            start_deliverer(connect(settings.redis_url), settings)

    def received(sender: Any = None, request: Any = None, **_: Any) -> None:
        if (
            request is not None
            and request.name == TASK_NAMES["create"]
            and not request.eta  # a retry: it looks up for itself, fresh
            and getattr(sender, "app", None) is app
            and type(getattr(sender, "pool", None)).__module__ in _POOLS_IN_PROCESS
        ):
            app.pipeline().prefetch.submit(request.args[0])

    app.signal_hooks += [logging_setup, ready, received]
    setup_logging.connect(logging_setup)
    worker_ready.connect(ready)
    task_received.connect(received)


# Pools whose tasks run in the consumer's process, so a lookup made there on receipt
# is at hand when the task runs (a prefork child has a pipeline of its own).
_POOLS_IN_PROCESS = ("celery.concurrency.thread", "celery.concurrency.solo")


def _warm_up(app: CardloadApp) -> None:
    """Before the first job: this process's pipeline built, its scripts loaded into
    Redis and a token taken, so the first jobs pay none of it and bad credentials show
    at start. Never fatal: a job does each of these itself when it has to."""
    try:
        pipeline = app.pipeline()
        pipeline.store.load_scripts()
        pipeline.client.authenticate()
    except Exception as exc:  # the API or Redis away for a moment: the jobs will wait
        log.warning("worker.warm_up_failed", error=str(exc))


def _forget_shared_token(settings: Settings) -> None:
    """cardload 0.1 cached the access token in Redis, where producers could read it."""
    client = connect(settings.redis_url)
    try:
        if client.delete(keys.LEGACY_TOKEN):
            log.warning("token.legacy_copy_deleted", key=keys.LEGACY_TOKEN)
    except redis.RedisError as exc:
        log.warning("token.legacy_copy_unchecked", error=str(exc))
    finally:
        client.close()
