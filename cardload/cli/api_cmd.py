"""``cardload api``: serve the HTTP API; ``cardload api-keys``: its keys."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from cardload.apikeys import SCOPES, ApiKeyStore, NameTaken
from cardload.cli.context import Context
from cardload.cli.failures import EXIT_ATTENTION, EXIT_INPUT
from cardload.cli.output import add_json_flag, emit_json, table
from cardload.errors import MissingExtraError
from cardload.observability.logging import configure_logging


def register(commands: Any) -> None:
    api = commands.add_parser("api", help="serve the HTTP API for order systems")
    api.add_argument("--host", help="address to listen on (default: CARDLOAD_API_HOST)")
    api.add_argument("--port", type=int, help="port (default: CARDLOAD_API_PORT); 0: a free one")
    api.add_argument("--openapi", action="store_true", help="print the OpenAPI document and exit")
    api.set_defaults(run=_serve)

    keys = commands.add_parser("api-keys", help="API keys of the HTTP API")
    sub = keys.add_subparsers(dest="api_keys_command", required=True, metavar="COMMAND")
    create = sub.add_parser("create", help="make a key (printed once, kept only as a hash)")
    create.add_argument("--name", required=True, help="who holds it (shop-eu, payroll)")
    create.add_argument(
        "--scopes",
        required=True,
        help=f"comma separated, of {', '.join(SCOPES)}: submit loads, read them, operate "
        "dead letters",
    )
    add_json_flag(create)
    create.set_defaults(run=_create)
    listing = sub.add_parser("list", help="the keys: names, ids and scopes (never the keys)")
    add_json_flag(listing)
    listing.set_defaults(run=_list)
    revoke = sub.add_parser("revoke", help="revoke a key by name: it is refused at once")
    revoke.add_argument("name", help="the name the key was created with")
    revoke.set_defaults(run=_revoke)


def _api_modules() -> tuple[Any, Any]:
    """uvicorn and the app's factory: imported on use (the api extra), not with the CLI."""
    try:
        uvicorn = importlib.import_module("uvicorn")
        api = importlib.import_module("cardload.api")
    except ImportError as exc:
        raise MissingExtraError(
            "the HTTP API needs the api extra: pip install 'cardload[api]'"
        ) from exc
    return uvicorn, api.create_api


def _serve(args: argparse.Namespace) -> int:
    uvicorn, create_api = _api_modules()
    ctx = Context.load()
    settings = ctx.settings
    app = create_api(settings)
    if args.openapi:
        print(json.dumps(app.openapi(), indent=2, ensure_ascii=False))
        return 0
    configure_logging(settings.log.format, settings.log.level)
    host = args.host or settings.api.host
    port = settings.api.port if args.port is None else args.port
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,  # our own request log: no headers, the key's name only
        log_config=None,  # the logging configured above
        server_header=False,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0


def _store() -> ApiKeyStore:
    return ApiKeyStore(Context.load().redis)


def _create(args: argparse.Namespace) -> int:
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    try:
        record, key = _store().create(args.name, scopes)
    except (NameTaken, ValueError) as exc:
        print(f"cardload api-keys create: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if args.json:
        emit_json({"name": record.name, "key": key, "scopes": list(record.scopes)})
    else:
        print(f"API key {record.name!r} (scopes {', '.join(record.scopes)}):")
        print(key)
        print("It is shown once and kept only as a hash: store it now.")
    return 0


def _list(args: argparse.Namespace) -> int:
    views = [key.view() for key in _store().list()]
    if args.json:
        emit_json(views)
    else:
        rows = [v | {"scopes": ",".join(v["scopes"])} for v in views]
        table(rows, ["name", "key_id", "scopes", "created_at"])
    return 0


def _revoke(args: argparse.Namespace) -> int:
    if not _store().revoke(args.name):
        print(f"cardload api-keys revoke: no API key named {args.name!r}", file=sys.stderr)
        return EXIT_ATTENTION
    print(f"revoked {args.name!r}")
    return 0
