"""The Celery application and its reliability settings.

Why each setting (see the reliability notes in the README):
- acks late + reject on worker lost: a message is acknowledged only after its step
  ran; a killed child's message goes back to the queue.
- prefetch 1: a worker holds no more messages than it runs.
- visibility timeout longer than any retry delay: otherwise a delayed retry waiting
  unacknowledged in a worker is delivered a second time.
- events on, sent events on: Flower sees every task, also before a worker takes it.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_process_init, worker_ready

from config import Settings, load_settings
from observability import configure_logging
from worker.sweeper import start_sweeper


def celery_config(settings: Settings) -> dict[str, Any]:
    vt = settings.jobs.visibility_timeout_s
    visibility = {"visibility_timeout": vt}
    # kombu scans for expired unacknowledged messages every interval x throttle seconds
    # (100 s by default); scan every interval instead, so a killed worker's messages
    # come back soon after the visibility timeout, not minutes later.
    restore = {"unacked_restore_interval": max(1, min(10, vt // 10)), "unacked_restore_throttle": 1}
    return {
        "broker_url": settings.effective_broker_url,
        "broker_transport_options": visibility | restore,
        "result_backend_transport_options": visibility,
        "visibility_timeout": settings.jobs.visibility_timeout_s,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": settings.jobs.queue,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_ignore_result": True,  # state lives in the job record, not a result backend
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_prefetch_multiplier": 1,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        "worker_soft_shutdown_timeout": 30.0,
        "worker_enable_soft_shutdown_on_idle": True,
    }


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or load_settings()
    celery_app = Celery("cardload", include=["tasks.card_load"])
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
    load_settings().require_secuconnect()
    start_sweeper(app)
