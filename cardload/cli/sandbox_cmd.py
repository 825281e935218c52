"""``cardload sandbox serve``: the local secuconnect simulator over HTTP."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cardload import sandbox
from cardload.sandbox import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    FaultRule,
    FaultSettings,
    SandboxApp,
)
from cardload.sandbox.world import CONTRACT_ID, DEVICE_ID


def register(commands: Any) -> None:
    group = commands.add_parser("sandbox", help="the local secuconnect simulator")
    sub = group.add_subparsers(dest="sandbox_command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="serve the sandbox over HTTP until interrupted")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8600, help="0 picks a free port")
    serve.add_argument("--seed", type=int, default=0, help="seed for ids and faults")
    serve.add_argument(
        "--client-id", default=DEFAULT_CLIENT_ID, help="the OAuth client id it takes"
    )
    serve.add_argument(
        "--client-secret", default=DEFAULT_CLIENT_SECRET, help="the OAuth secret it takes"
    )
    serve.add_argument("--token-ttl-s", type=int, default=1200, help="OAuth expires_in")
    serve.add_argument("--latency-ms", type=int, default=0, help="added to every API call")
    serve.add_argument("--jitter-ms", type=int, default=0, help="uniform extra latency")
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="e.g. kind=error_503,probability=0.2,endpoint=start (repeatable)",
    )
    serve.add_argument(
        "--faults-file", type=Path, help="JSON fault settings (seed, latency, rules)"
    )
    serve.add_argument(
        "--seed-compat",
        action="store_true",
        help="take a /start without a payment method and no /prepare before it, as the "
        "seed document shows (the API refuses it)",
    )
    serve.set_defaults(run=_serve)


def _fault_settings(args: argparse.Namespace) -> FaultSettings:
    base: dict[str, Any] = {}
    if args.faults_file:
        base = json.loads(args.faults_file.read_text())
    rules = [*base.get("rules", []), *(FaultRule.parse(spec).model_dump() for spec in args.fault)]
    return FaultSettings.model_validate(
        {
            "seed": base.get("seed", args.seed),
            "latency_ms": base.get("latency_ms", args.latency_ms),
            "jitter_ms": base.get("jitter_ms", args.jitter_ms),
            "rules": rules,
        }
    )


def _serve(args: argparse.Namespace) -> int:
    try:
        faults = _fault_settings(args)
    except (ValidationError, ValueError, OSError) as exc:
        raise SystemExit(f"cardload sandbox serve: invalid faults: {exc}") from None
    app = SandboxApp(
        seed=args.seed,
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_ttl_s=args.token_ttl_s,
        faults=faults,
        bare_start=args.seed_compat,
    )
    # The server (the sandbox extra) is imported here, on use, not with the CLI.
    asyncio.run(_run(sandbox.SandboxServer(app, args.host, args.port), app))
    return 0


async def _run(server: sandbox.SandboxServer, app: SandboxApp) -> None:
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Printed for people and scripts alike: the demo reads the first line.
    print(f"sandbox listening on {server.url}", flush=True)
    print(f"  client_id={app.auth.client_id} client_secret={app.auth.client_secret}", flush=True)
    print(f"  contract_id={CONTRACT_ID} device_id={DEVICE_ID}", flush=True)
    if app.faults.settings.rules or app.faults.settings.latency_ms:
        print(f"  faults={app.faults.settings.model_dump_json()}", flush=True)
    serving = asyncio.create_task(server.serve_forever())
    await stop.wait()
    serving.cancel()
    await server.close()
