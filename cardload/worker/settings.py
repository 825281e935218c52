"""Celery's configuration, derived from cardload's settings.

Why each setting:
- acks late + reject on worker lost: a message is acknowledged only after its step
  ran; a killed child's message goes back to the queue.
- prefetch 4 per thread: creates waiting for a thread have their lookups made meanwhile.
- visibility timeout longer than any retry delay: otherwise a delayed retry waiting
  unacknowledged in a worker is delivered a second time.
- events on, sent events on: Flower sees every task, also before a worker takes it.
- publishing retried with backoff for about ten seconds: a step's next message survives
  a broker blip (past that, the task itself retries, and the stall sweep backs it up).
- a ``redis://`` broker through ``worker.transport``: kombu's, with one Redis client per
  channel instead of one per message.
"""

from __future__ import annotations

from typing import Any

from cardload.config import Settings
from cardload.jobs.connection import SENTINEL_SCHEME, SentinelUrl
from cardload.worker.transport import TRANSPORT


def celery_config(settings: Settings) -> dict[str, Any]:
    vt = settings.jobs.visibility_timeout_s
    visibility = {"visibility_timeout": vt}
    # kombu scans for expired unacknowledged messages every interval x throttle seconds
    # (100 s by default); scan every interval instead, so a killed worker's messages
    # come back soon after the visibility timeout, not minutes later.
    restore = {"unacked_restore_interval": max(1, min(10, vt // 10)), "unacked_restore_throttle": 1}
    broker = settings.effective_broker_url
    # rediss:// and redis+socket:// keep kombu's own: their TLS and socket options are
    # chosen from the URL's scheme, which a named transport would override.
    transport = {"broker_transport": TRANSPORT} if broker.startswith("redis://") else {}
    return (
        transport
        | {
            "broker_url": broker,
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
            # Four messages per thread: a create waits for a thread with its merchantRef looked
            # up meanwhile (pipeline/prefetch.py); with two, at 50 ms a create still waited for
            # its lookup (throughput x0.71 of the naive chain, x0.98 with four). Unacknowledged,
            # so a crash loses none (they come back after the visibility timeout).
            "worker_prefetch_multiplier": 4,
            "worker_send_task_events": True,
            "task_send_sent_event": True,
            "worker_cancel_long_running_tasks_on_connection_loss": True,
            "worker_hijack_root_logger": False,
            "worker_soft_shutdown_timeout": 30.0,
            "worker_enable_soft_shutdown_on_idle": True,
            "task_publish_retry": True,
            "task_publish_retry_policy": {
                "max_retries": 6,
                "interval_start": 0.2,
                "interval_step": 0.5,
                "interval_max": 3.0,
            },
        }
        | _rabbitmq(broker)
        | _sentinel(broker, visibility | restore)
    )


def broker_url(settings: Settings) -> str:
    """The URL kombu connects to: cardload's broker setting, a Sentinel URL in kombu's
    own form (``sentinel://host:port;sentinel://...``, the service in the transport
    options)."""
    broker = settings.effective_broker_url
    if broker.startswith(SENTINEL_SCHEME):
        return SentinelUrl.parse(broker).kombu_url()
    return broker


def _sentinel(broker: str, options: dict[str, Any]) -> dict[str, Any]:
    """Behind Sentinel (``redis+sentinel://``): kombu's Sentinel transport, which asks
    the Sentinels for the primary and follows a failover."""
    if not broker.startswith(SENTINEL_SCHEME):
        return {}
    found = SentinelUrl.parse(broker)
    return {
        "broker_url": found.kombu_url(),
        "broker_transport_options": options | {"master_name": found.service},
    }


def _rabbitmq(broker: str) -> dict[str, Any]:
    """On RabbitMQ: a quorum queue (replicated, durable; a message is handed back when
    its consumer's connection drops, not after a visibility timeout), publisher confirms
    (a publish returns once the broker has the message), and a topic exchange, which
    Celery's native delayed delivery needs for retries with a countdown on a quorum
    queue (messages wait in the broker, not in a worker's memory)."""
    if not broker.startswith(("amqp://", "amqps://", "pyamqp://")):
        return {}
    return {
        "task_default_queue_type": "quorum",
        "task_default_exchange_type": "topic",
        "broker_transport_options": {"confirm_publish": True},
        # Celery's pool of publishing connections sends no heartbeats of its own: under
        # load RabbitMQ closed them, and a worker's consuming one with them ("missed
        # heartbeats from client"), in the chaos test. A killed worker's connections
        # close with its process (the kernel ends them), which hands its messages back
        # at once. A worker that hangs (or a host cut off) keeps its prefetched messages
        # until RabbitMQ's consumer_timeout (30 min by default) or TCP keepalive ends
        # its connection: a delay, never a second load (README, "Which broker").
        "broker_heartbeat": 0,
    }
