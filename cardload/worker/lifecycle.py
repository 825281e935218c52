"""What a cardload worker does when it starts: our logging, a check of its settings,
the stall sweeper, and the removal of 0.1's shared token.

Connected to Celery's ``celeryd_init`` for our app alone: only when a worker of that
app starts are the other signals connected. (A ``setup_logging`` receiver alone
changes how Celery sets up logging, so it must not exist in a host's worker.)
"""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery
from celery.signals import celeryd_init, setup_logging, worker_process_init, worker_ready

from cardload.config import Settings, load_settings
from cardload.jobs import keys
from cardload.observability import configure_logging, get_logger
from cardload.worker.sweeper import start_sweeper

log = get_logger(__name__)


def connect_worker_signals(app: Celery) -> None:
    def on_worker_init(instance: Any = None, **_: Any) -> None:
        if getattr(instance, "app", None) is app:
            _connect_for_this_worker(app)

    celeryd_init.connect(on_worker_init, weak=False, dispatch_uid=f"cardload-init-{id(app)}")


def _connect_for_this_worker(app: Celery) -> None:
    def logging_setup(**_: Any) -> None:
        settings = load_settings()
        configure_logging(settings.log.format, settings.log.level)

    def check_settings(**_: Any) -> None:
        # Fail at start, naming the variable, rather than at the first job.
        load_settings().require_secuconnect()

    def ready(**_: Any) -> None:
        settings = load_settings()
        settings.require_secuconnect()
        _forget_shared_token(settings)
        start_sweeper(app)

    uid = f"cardload-{id(app)}"
    setup_logging.connect(logging_setup, weak=False, dispatch_uid=f"{uid}-logging")
    worker_process_init.connect(check_settings, weak=False, dispatch_uid=f"{uid}-check")
    worker_ready.connect(ready, weak=False, dispatch_uid=f"{uid}-ready")


def _forget_shared_token(settings: Settings) -> None:
    """cardload 0.1 cached the access token in Redis, where producers could read it."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        if client.delete(keys.LEGACY_TOKEN):
            log.warning("token.legacy_copy_deleted", key=keys.LEGACY_TOKEN)
    except redis.RedisError as exc:
        log.warning("token.legacy_copy_unchecked", error=str(exc))
    finally:
        client.close()
