"""``cardload health [--token] [--json]``: for probes and operators.

Checks Redis and the broker (either unreachable: down, exit 2), the API's shared
circuit breaker (open or probing: degraded, exit 1) and, with ``--token``, whether the
token endpoint gives this host's credentials a token (refused or failing: degraded).
Healthy: exit 0. The token check fetches a token each time: leave it out of probes
that run every few seconds.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx

from cardload.cli.context import Context
from cardload.flowcontrol import SharedBreaker
from cardload.secuconnect import Credentials, TokenUnavailableError, build_http, fetch_token

HEALTHY, DEGRADED, DOWN = 0, 1, 2
_STATES = {HEALTHY: "healthy", DEGRADED: "degraded", DOWN: "down"}


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "health",
        help="check Redis, the broker, the API's circuit breaker (and a token): exit 0 "
        "healthy, 1 degraded, 2 down",
    )
    parser.add_argument("--token", action="store_true", help="also fetch an access token")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    ctx = Context.load()
    checks: dict[str, dict[str, Any]] = {}
    checks["redis"] = _check(DOWN, lambda: ctx.redis.ping() and {})
    checks["broker"] = _check(DOWN, lambda: _broker(ctx))
    if checks["redis"]["status"] == "ok":
        checks["breaker"] = _check(DEGRADED, lambda: _breaker(ctx))
    if args.token:
        checks["token"] = _check(DEGRADED, lambda: _token(ctx))
    code = max((c.pop("code") for c in checks.values()), default=HEALTHY)
    if args.json:
        print(json.dumps({"status": _STATES[code], "checks": checks}))
    else:
        print(_STATES[code])
        for name, check in checks.items():
            detail = ", ".join(f"{k}={v}" for k, v in check.items() if k != "status")
            print(f"  {name:<8} {check['status']}{'  ' + detail if detail else ''}")
    return code


def _check(failing: int, probe: Any) -> dict[str, Any]:
    try:
        found = probe()
    except Exception as exc:  # a check reports what failed, never raises
        return {"status": "failed", "error": type(exc).__name__, "code": failing}
    if isinstance(found, tuple):  # (degraded?, details)
        bad, details = found
        return {"status": "degraded" if bad else "ok", **details, "code": failing if bad else 0}
    return {"status": "ok", **(found or {}), "code": HEALTHY}


def _broker(ctx: Context) -> dict[str, Any]:
    with ctx.app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
    return {}


def _breaker(ctx: Context) -> tuple[bool, dict[str, Any]]:
    view = SharedBreaker(ctx.redis, ctx.settings.breaker).view()
    details: dict[str, Any] = {"state": view.state}
    if view.state != "closed":
        details |= {"reason": view.reason, "next_probe_in_s": round(view.open_for_s, 1)}
    if view.paused_for_s:
        details["paused_for_s"] = round(view.paused_for_s, 1)  # a 429's Retry-After
    return view.state != "closed", details


def _token(ctx: Context) -> tuple[bool, dict[str, Any]]:
    secu = ctx.settings.secuconnect
    if not (secu.client_id and secu.client_secret):
        return True, {"error": "CARDLOAD_SECUCONNECT_CLIENT_ID and _CLIENT_SECRET are not set"}
    with build_http(secu.base_url, timeout=httpx.Timeout(10.0)) as http:
        try:
            fetch_token(http, Credentials(secu.client_id, secu.client_secret))
        except TokenUnavailableError as exc:
            refused = "credentials refused" if exc.credentials_refused else exc.message
            return True, {"error": refused}
    return False, {}
