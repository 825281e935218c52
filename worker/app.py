"""The Celery application: ``celery -A worker worker`` finds it as ``worker.app``."""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery
from celery.signals import setup_logging, worker_process_init, worker_ready

from config import Settings, load_settings
from jobs import keys
from observability import configure_logging, get_logger
from worker.settings import celery_config
from worker.sweeper import start_sweeper


def create_app(settings: Settings | None = None) -> Celery:
    """The app; without settings it reads the environment on first use, not now."""
    celery_app = Celery("cardload", include=["tasks.card_load"])
    if settings is None:
        celery_app.config_from_object("worker.celeryconfig")
    else:
        celery_app.conf.update(celery_config(settings))
    return celery_app


app = create_app()


@setup_logging.connect
def _logging(**_: Any) -> None:
    # Connecting here keeps Celery from installing its own handlers.
    settings = load_settings()
    configure_logging(settings.log.format, settings.log.level)


@worker_process_init.connect
def _check_settings(**_: Any) -> None:
    # Fail at start, naming the variable, rather than at the first job.
    load_settings().require_secuconnect()


@worker_ready.connect
def _start_sweeper(sender: Any = None, **_: Any) -> None:
    settings = load_settings()
    settings.require_secuconnect()
    _forget_shared_token(settings)
    start_sweeper(app)


def _forget_shared_token(settings: Settings) -> None:
    """cardload 0.1 cached the access token in Redis, where producers could read it."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        if client.delete(keys.LEGACY_TOKEN):
            get_logger(__name__).warning("token.legacy_copy_deleted", key=keys.LEGACY_TOKEN)
    except redis.RedisError as exc:
        get_logger(__name__).warning("token.legacy_copy_unchecked", error=str(exc))
    finally:
        client.close()
