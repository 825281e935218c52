"""``cardload demo``: the whole product on a private stack, then everything stopped.

A private redis-server (or, without one installed, ``CARDLOAD_REDIS_URL``), the
sandbox over HTTP, one ``cardload worker`` process, and the sample batch in
``cardload/cli/data/sample-batch.csv``: valid rows, invalid rows (reported, not enqueued) and
a locked card that ends in the dead-letter store.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from cardload import sandbox
from cardload.cli.localstack import has_redis_server, redis_server, wait_for
from cardload.cli.output import table
from cardload.config import Settings, load_settings, to_env
from cardload.events import CardLoadSucceeded, EventStream
from cardload.jobs.store import JobStore, job_store
from cardload.producers.batch import submit_batch
from cardload.producers.batch_report import batch_report, batch_status
from cardload.producers.enqueue import CardLoadProducer
from cardload.sandbox.settings import sandbox_settings
from cardload.secuconnect.money import format_money_de
from cardload.worker import create_app

SAMPLE = Path(__file__).parent / "data" / "sample-batch.csv"


def register(commands: Any) -> None:
    demo = commands.add_parser("demo", help="run the sample batch on a private sandbox + worker")
    demo.add_argument("--file", type=Path, default=SAMPLE, help="batch file to run")
    demo.add_argument(
        "--timeout-s", type=float, default=120, help="give up after this many seconds (120)"
    )
    demo.set_defaults(run=_run)


@contextmanager
def _private_redis() -> Iterator[str]:
    if not has_redis_server():
        url = load_settings().redis_url
        print(f"redis: no redis-server installed, using CARDLOAD_REDIS_URL {url}")
        yield url
        return
    with redis_server() as url:
        print(f"redis: private redis-server at {url}")
        yield url


def _settings(redis_url: str, sandbox_url: str) -> Settings:
    return sandbox_settings(
        redis_url,
        sandbox_url,
        retry={"max_attempts": 5, "base_backoff_s": 0.2, "max_backoff_s": 2},
        log={"format": "console", "level": "WARNING"},
    )


def _child_env(settings: Settings) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CARDLOAD_")}
    return inherited | to_env(settings)


@contextmanager
def _worker(settings: Settings, log_path: Path) -> Iterator[None]:
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cardload.cli.main",
                "worker",
                "--concurrency=8",
                "--without-mingle",
                "--without-gossip",
                "--loglevel=INFO",
            ],
            env=_child_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _money(cents: object) -> str:
    return format_money_de(int(str(cents))) if cents not in ("", None) else ""


def _print_results(store: JobStore, batch_id: str) -> None:
    rows = [
        {
            "row": line["row"],
            "card": line.get("card_number", ""),
            "amount": _money(line.get("amount_cents")),
            "outcome": line["outcome"],
            "new balance": _money(line.get("new_balance_cents")),
            "transaction": line.get("transaction_id", ""),
            "error": line.get("error", ""),
        }
        for line in batch_report(store, batch_id)
    ]
    print()
    table(rows, ["row", "card", "amount", "outcome", "new balance", "transaction", "error"])


def _run(args: argparse.Namespace) -> int:
    with (
        tempfile.TemporaryDirectory(prefix="cardload-demo-") as tmp,
        _private_redis() as redis_url,
        sandbox.serve_in_thread(sandbox.SandboxApp()) as server,
    ):
        print(f"sandbox: {server.url}")
        settings = _settings(redis_url, server.url)
        client = redis.Redis.from_url(redis_url)
        producer = CardLoadProducer(create_app(settings), job_store(client, settings), settings)
        log_path = Path(tmp) / "worker.log"
        with _worker(settings, log_path):
            result = submit_batch(producer, args.file)
            invalid = len(result.invalid)
            print(
                f"batch {result.batch_id}: {result.rows} rows, {result.enqueued} enqueued, "
                f"{invalid} invalid (reported, not enqueued); read as {result.read_as}"
            )
            try:
                wait_for(
                    # Finished: every job ended and its result event is out.
                    lambda: batch_status(producer.store, result.batch_id).finished,
                    args.timeout_s,
                    "the worker to finish the batch",
                )
            except TimeoutError as exc:
                print(log_path.read_text()[-3000:], file=sys.stderr)
                print(f"cardload demo: {exc}", file=sys.stderr)
                return 1
        _print_results(producer.store, result.batch_id)
        status = batch_status(producer.store, result.batch_id)
        dead = client.zcard(settings.events.dead_letters)
        events = client.xlen(settings.events.stream)
        print(f"\nby status: {dict(status.by_status)}; dead letters: {dead}; events: {events}")
        _print_first_receipt(EventStream(client, settings.events.stream))
        client.close()
    print("\nstopped: worker, sandbox, redis")
    return 0


def _print_first_receipt(events: EventStream) -> None:
    """The receipt as a consumer of the result events sees it (card numbers masked)."""
    for entry in events.read():
        if isinstance(entry.event, CardLoadSucceeded):
            print(f"\nreceipt of job {entry.event.job_id} ({entry.event.transaction_id}):\n")
            print(entry.event.receipt.text)
            return
