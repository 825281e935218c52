"""``cardload webhooks add | list | remove | dead | replay | run``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from cardload.cli.context import Context
from cardload.cli.failures import EXIT_ATTENTION, EXIT_INPUT
from cardload.cli.output import add_json_flag, emit_json, table
from cardload.observability.logging import configure_logging
from cardload.webhooks.addresses import AddressRefused, check_url
from cardload.webhooks.dead import DeadDeliveries
from cardload.webhooks.delivery import Deliverer
from cardload.webhooks.endpoints import EVENT_TYPES, EndpointStore


def register(commands: Any) -> None:
    group = commands.add_parser("webhooks", help="result events POSTed to your endpoints")
    sub = group.add_subparsers(dest="webhooks_command", required=True, metavar="COMMAND")
    add = sub.add_parser("add", help="register an endpoint (its secret is printed once)")
    add.add_argument("--url", required=True, help="https://... that takes the POSTs")
    add.add_argument(
        "--events",
        default=",".join(EVENT_TYPES),
        help=f"comma separated, of {', '.join(EVENT_TYPES)} (default: both)",
    )
    add_json_flag(add)
    add.set_defaults(run=_add)
    listing = sub.add_parser("list", help="the endpoints (never their secrets)")
    add_json_flag(listing)
    listing.set_defaults(run=_list)
    remove = sub.add_parser("remove", help="stop delivering to an endpoint")
    remove.add_argument("endpoint_id", help="the id add printed (we_...)")
    remove.set_defaults(run=_remove)
    dead = sub.add_parser("dead", help="deliveries that failed for a day")
    dead.add_argument("--endpoint", help="only this endpoint's")
    add_json_flag(dead)
    dead.set_defaults(run=_dead)
    replay = sub.add_parser("replay", help="send dead deliveries again")
    replay.add_argument("delivery_ids", nargs="*", help="as dead lists them")
    replay.add_argument("--all", action="store_true", help="every dead delivery (of --endpoint)")
    replay.add_argument("--endpoint", help="with --all: only this endpoint's")
    replay.set_defaults(run=_replay)
    run = sub.add_parser(
        "run", help="a delivery worker in this process (cardload worker runs one too)"
    )
    run.add_argument("--concurrency", type=int, default=8, help="deliveries in flight (8)")
    run.set_defaults(run=_run)


def _add(args: argparse.Namespace) -> int:
    ctx = Context.load()
    allowed = ctx.settings.webhooks
    events = [e.strip() for e in args.events.split(",") if e.strip()]
    try:
        check_url(
            args.url, allow_loopback=allowed.allow_loopback, allow_private=allowed.allow_private
        )
        endpoint = EndpointStore(ctx.redis, ctx.settings.events.stream).add(args.url, events)
    except (AddressRefused, ValueError) as exc:
        print(f"cardload webhooks add: {exc}", file=sys.stderr)
        return EXIT_INPUT
    secret = endpoint.secret.get_secret_value()
    if args.json:
        emit_json({"id": endpoint.id, "secret": secret} | endpoint.view())
    else:
        print(f"endpoint {endpoint.id} for {', '.join(endpoint.events)}: {endpoint.url}")
        print(f"signing secret (shown once): {secret}")
    return 0


def _list(args: argparse.Namespace) -> int:
    ctx = Context.load()
    views = [e.view() for e in EndpointStore(ctx.redis, ctx.settings.events.stream).all()]
    if args.json:
        emit_json(views)
    else:
        table([v | {"events": ",".join(v["events"])} for v in views], ["id", "url", "events"])
    return 0


def _remove(args: argparse.Namespace) -> int:
    ctx = Context.load()
    if not EndpointStore(ctx.redis, ctx.settings.events.stream).remove(args.endpoint_id):
        print(f"cardload webhooks remove: no endpoint {args.endpoint_id}", file=sys.stderr)
        return EXIT_ATTENTION
    print(f"removed {args.endpoint_id}")
    return 0


def _dead(args: argparse.Namespace) -> int:
    entries = DeadDeliveries(Context.load().redis).entries(args.endpoint)
    if args.json:
        emit_json([e.view() for e in entries])
    else:
        rows = [e.view() for e in entries]
        table(rows, ["delivery_id", "type", "attempts", "last_error"])
    return 0


def _replay(args: argparse.Namespace) -> int:
    dead = DeadDeliveries(Context.load().redis)
    ids = [e.delivery_id for e in dead.entries(args.endpoint)] if args.all else args.delivery_ids
    if not ids:
        print("cardload webhooks replay: name deliveries, or --all", file=sys.stderr)
        return EXIT_INPUT
    count = dead.replay(ids)
    print(f"sent again: {count} of {len(ids)}")
    return 0 if count == len(ids) else EXIT_ATTENTION


def _run(args: argparse.Namespace) -> int:
    ctx = Context.load()
    configure_logging(ctx.settings.log.format, ctx.settings.log.level)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    Deliverer(ctx.redis, ctx.settings, concurrency=args.concurrency).run(stop)
    return 0
