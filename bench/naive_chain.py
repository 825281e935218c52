"""THE BASELINE, not cardload: the card load as a naive Celery app would do it.

A bare Celery app whose chain runs ``create`` then ``start`` with httpx: no job
record, no lookup, no leases, no events stream, no dead letters, no retries but a
transport error's (a dropped connection, rare: else the run waits for a load that
never comes; a create retried so may leave a second transaction, never started). Task
events are on (``-E`` and sent events), as Flower needs and as cardload runs.
Everything else is Celery's default. ``bench/worker_cost.py`` runs it beside
``cardload worker`` with the same pool, concurrency, broker and sandbox.

Run as a worker: ``NAIVE_BROKER_URL=… NAIVE_API_URL=… celery -A naive_chain worker``
from ``bench/``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import httpx
from celery import Celery, chain

QUEUE = "naive"
TX = "/api/v2/Smart/Transactions"
CONTRACT = "GCR_9OIH9JOL8KIV5PFJBEOS2NN8TCM1DF"
DEVICE = "SDV_WPX6NU09Q2NDF0KJD3H584EXJR3XA2"
CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "sandbox-client",
    "client_secret": "sandbox-secret",
}


def make_app(broker_url: str) -> Celery:
    """The naive app: the worker's (``NAIVE_BROKER_URL``), or a producer's for one run."""
    naive = Celery("naive", broker=broker_url, set_as_current=False)
    naive.conf.update(
        task_default_queue=QUEUE,
        task_ignore_result=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
    )
    return naive


app = make_app(os.environ.get("NAIVE_BROKER_URL", "redis://127.0.0.1:6379/0"))

_lock = threading.Lock()
_session: list[tuple[httpx.Client, dict[str, str]]] = []


def _api() -> tuple[httpx.Client, dict[str, str]]:
    """One keep-alive client and one token per worker process."""
    with _lock:
        if not _session:
            http = httpx.Client(
                base_url=os.environ["NAIVE_API_URL"],
                timeout=30,
                limits=httpx.Limits(max_connections=50),
            )
            token = http.post("/oauth/token", json=CREDENTIALS).json()["access_token"]
            _session.append((http, {"Authorization": f"Bearer {token}"}))
        return _session[0]


def body(card: str, cents: int, reference: str) -> dict[str, Any]:
    euros = f"{cents // 100},{cents % 100:02d}"
    line = {
        "id": 1,
        "ean": "4260447149502",
        "article_number": "3",
        "desc": f"Kartenaufladung {euros} EUR",
        "quantity": 1,
        "priceOne": cents,
        "tax": 0,
    }
    return {
        "merchantRef": reference,
        "contract": {"id": CONTRACT},
        "device_source": {"id": DEVICE},
        "intent": "sale",
        "idents": [{"type": "card", "value": card}],
        "basket": {"products": [line]},
        "basket_info": {"sum": cents, "currency": "EUR"},
    }


# A dropped keep-alive connection ("Bad file descriptor"): seen once in 8,000 loads.
_RETRY: dict[str, Any] = {
    "autoretry_for": (httpx.TransportError,),
    "max_retries": 3,
    "default_retry_delay": 0.1,
}


@app.task(name="naive.create", **_RETRY)
def create(card: str, cents: int, reference: str) -> str:
    http, headers = _api()
    answer = http.post(TX, json=body(card, cents, reference), headers=headers)
    answer.raise_for_status()
    return str(answer.json()["id"])


@app.task(name="naive.start", **_RETRY)
def start(tx_id: str) -> str:
    http, headers = _api()
    answer = http.post(f"{TX}/{tx_id}/start/cash", headers=headers)
    answer.raise_for_status()
    return str(answer.json()["status"])


def load(producer: Celery, card: str, cents: int, reference: str) -> None:
    """Enqueue one card load as the naive chain, from a producer's app."""
    first = producer.signature("naive.create", args=(card, cents, reference))
    chain(first, producer.signature("naive.start")).apply_async()


def enqueue_create(producer: Celery, card: str, cents: int, reference: str) -> None:
    """Enqueue the chain's first task alone (what a naive enqueue loop does per row)."""
    producer.send_task("naive.create", args=(card, cents, reference))
