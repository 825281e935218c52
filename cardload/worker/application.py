"""The Celery application, made on first use and never at import.

``celery -A cardload.worker worker|flower`` and ``cardload worker`` find it as
``cardload.worker.app``. It is never the current app (``set_as_current=False``), its
tasks are registered on it alone (no ``shared_task``), and its worker signals are
connected for its own worker only: a host process that imports cardload, or runs a
Celery app of its own beside it, sees none of it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, cast

from celery import Celery
from kombu import pools

from cardload.config import Settings, load_settings
from cardload.pipeline.runtime import build_pipeline
from cardload.pipeline.steps import Pipeline
from cardload.tasks.card_load import register_tasks
from cardload.worker.lifecycle import connect_worker_signals
from cardload.worker.settings import broker_url, celery_config


class CardloadApp(Celery):
    """cardload's Celery app: it runs with its own settings, whatever the process's
    environment holds for other apps.

    - Its broker is ``CARDLOAD_BROKER_URL`` (or ``CARDLOAD_REDIS_URL``). Celery itself
      lets ``CELERY_BROKER_URL`` win over any app's configuration, and a host sets that
      variable for its own app.
    - kombu's connection-pool limit is one for the whole process: the host's stays.
    - Its workers build their pipeline from its settings, not from the environment.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__("cardload", set_as_current=False)
        self._settings = settings
        self._lock = threading.Lock()
        self._pipeline: Pipeline | None = None
        self._pipeline_pid = 0
        # Signal receivers are connected weakly; the app keeps its own alive.
        self.signal_hooks: list[Callable[..., None]] = []

    @property
    def cardload_settings(self) -> Settings:
        """The settings given, or read from the ``CARDLOAD_*`` environment on first use."""
        with self._lock:
            if self._settings is None:
                self._settings = load_settings()
            return self._settings

    def pipeline(self) -> Pipeline:
        """This process's pipeline (rebuilt in a forked child: no shared sockets)."""
        settings = self.cardload_settings
        with self._lock:
            if self._pipeline is None or self._pipeline_pid != os.getpid():
                self._pipeline, self._pipeline_pid = build_pipeline(settings), os.getpid()
            return self._pipeline

    def connection_for_read(self, url: str | None = None, **kwargs: Any) -> Any:
        return super().connection_for_read(url or self._broker_url(), **kwargs)

    def connection_for_write(self, url: str | None = None, **kwargs: Any) -> Any:
        return super().connection_for_write(url or self._broker_url(), **kwargs)

    def connection(self, hostname: str | None = None, **kwargs: Any) -> Any:
        return super().connection(hostname or self._broker_url(), **kwargs)

    broker_connection = connection

    @property
    def pool(self) -> Any:
        # Celery sets kombu's process-wide limit to this app's; keep the host's instead.
        self.conf.broker_pool_limit = cast(Callable[[], int], pools.get_limit)()
        return super().pool

    def _broker_url(self) -> str:
        return broker_url(self.cardload_settings)


def create_app(settings: Settings | None = None) -> CardloadApp:
    """An app with cardload's tasks and configuration; without ``settings`` it reads
    the environment on first use of its configuration, not now."""
    app = CardloadApp(settings)
    if settings is None:
        app.config_from_object("cardload.worker.celeryconfig")
    else:
        app.conf.update(celery_config(settings))
    register_tasks(app)
    connect_worker_signals(app)
    return app


class _Default:
    lock = threading.Lock()
    app: CardloadApp | None = None


def default_app() -> CardloadApp:
    """The app configured from the environment, made on the first call."""
    with _Default.lock:
        if _Default.app is None:
            _Default.app = create_app()
        return _Default.app
