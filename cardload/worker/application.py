"""The Celery application, made on first use and never at import.

``celery -A cardload.worker worker|flower`` and ``cardload worker`` find it as
``cardload.worker.app``. It is never the current app (``set_as_current=False``), its
tasks are registered on it alone (no ``shared_task``), and its worker signals are
connected for its own worker only: a host process that imports cardload, or runs a
Celery app of its own beside it, sees none of it.
"""

from __future__ import annotations

import threading

from celery import Celery

from cardload.config import Settings
from cardload.tasks.card_load import register_tasks
from cardload.worker.lifecycle import connect_worker_signals
from cardload.worker.settings import celery_config


def create_app(settings: Settings | None = None) -> Celery:
    """An app with cardload's tasks and configuration; without ``settings`` it reads
    the environment on first use of its configuration, not now."""
    app = Celery("cardload", set_as_current=False)
    if settings is None:
        app.config_from_object("cardload.worker.celeryconfig")
    else:
        app.conf.update(celery_config(settings))
    register_tasks(app)
    connect_worker_signals(app)
    return app


class _Default:
    lock = threading.Lock()
    app: Celery | None = None


def default_app() -> Celery:
    """The app configured from the environment, made on the first call."""
    with _Default.lock:
        if _Default.app is None:
            _Default.app = create_app()
        return _Default.app
