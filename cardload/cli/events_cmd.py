"""``cardload events tail [--follow]`` and ``cardload events schema``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cardload.cli.context import Context
from cardload.events.model import CardLoadSucceeded
from cardload.events.schema import render_schema
from cardload.events.stream import StreamEntry
from cardload.secuconnect.money import format_money_de


def register(commands: Any) -> None:
    events = commands.add_parser("events", help="result events")
    sub = events.add_subparsers(dest="events_command", required=True, metavar="COMMAND")
    tail = sub.add_parser("tail", help="the latest result events")
    tail.add_argument("-n", "--count", type=int, default=20, help="how many events (20)")
    tail.add_argument("--follow", action="store_true", help="keep printing new events")
    tail.add_argument("--json", action="store_true", help="one JSON event per line")
    tail.set_defaults(run=_tail)
    schema = sub.add_parser("schema", help="print the events' JSON Schema")
    schema.set_defaults(run=lambda _: print(render_schema(), end="") or 0)


def _line(entry: StreamEntry, as_json: bool) -> str:
    event = entry.event
    if as_json:
        return json.dumps(event.model_dump(mode="json"), ensure_ascii=False)
    at = event.occurred_at.isoformat(timespec="seconds")
    head = f"{at} {event.type:20} job={event.job_id} card={event.card_number}"
    amount = format_money_de(event.amount_cents, event.currency)
    if isinstance(event, CardLoadSucceeded):
        balance = format_money_de(event.balances.total_cents) if event.balances else "unknown"
        return f"{head} +{amount} tx={event.transaction_id} balance={balance}"
    return f"{head} {amount} error={event.error.kind}: {event.error.message}"


def _tail(args: argparse.Namespace) -> int:
    ctx = Context.load()
    entries = ctx.events.tail(args.count)
    for entry in entries:
        print(_line(entry, args.json), flush=True)
    last = entries[-1].stream_id if entries else "$"
    while args.follow:
        for entry in ctx.events.read(after=last, block_ms=5000):
            print(_line(entry, args.json), flush=True)
            last = entry.stream_id
    return 0
