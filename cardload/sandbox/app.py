"""The sandbox as a function from request to outcome, independent of any server.

The socket server (:mod:`sandbox.server`) and the in-process httpx transport
(:mod:`sandbox.transport`) both call :meth:`SandboxApp.handle` and only differ in
how they wait, answer or drop the connection.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qs

from pydantic import ValidationError

from cardload.sandbox.auth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Auth, OAuthFailure
from cardload.sandbox.engine import Engine, Payment
from cardload.sandbox.failures import ApiFailure, invalid, not_found
from cardload.sandbox.faults import REFUSING, Endpoint, FaultInjector, FaultRule, FaultSettings
from cardload.sandbox.render import merchant_card, transaction
from cardload.sandbox.world import BERLIN, World, seeded_world

API = "/api/v2/Smart/Transactions"
ADMIN = "/_sandbox"
# "/start/" (an empty method) is what the PHP SDK sends for a start after a prepare.
_TX_PATH = re.compile(
    rf"^{API}/(?P<id>[^/]+)(?:/(?P<action>start|prepare|cancel)(?:/(?P<method>[^/]*))?)?$"
)

_COLLECTION_ACTIONS: dict[str, Endpoint] = {"POST": "create", "GET": "list"}
_TX_ACTIONS: dict[tuple[str | None, str], Endpoint] = {
    (None, "GET"): "get",
    ("start", "POST"): "start",
    ("prepare", "POST"): "prepare",
    ("cancel", "POST"): "cancel",
}

# A handler runs one request; a start goes as the fault's Payment says.
Handler = Callable[[Payment], "SandboxResponse"]


@dataclass(frozen=True)
class SandboxRequest:
    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    @classmethod
    def build(
        cls, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> SandboxRequest:
        path, _, query = target.partition("?")
        return cls(
            method.upper(), path, parse_qs(query), {k.lower(): v for k, v in headers.items()}, body
        )

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise invalid("body: not valid JSON") from None


@dataclass(frozen=True)
class SandboxResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class Outcome:
    """Wait ``wait_s``, then send ``response``, or lose the connection (``lose_as``)."""

    wait_s: float
    response: SandboxResponse | None
    lose_as: Literal["reset", "timeout"] | None = None


def json_response(status: int, payload: Any, *extra: tuple[str, str]) -> SandboxResponse:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return SandboxResponse(status, (("content-type", "application/json"), *extra), body)


_PROXY_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_PROXY_408 = (
    b"<html>\r\n<head><title>408 Request Time-out</title></head>\r\n<body>\r\n"
    b"<center><h1>408 Request Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


class SandboxApp:
    def __init__(
        self,
        *,
        seed: int = 0,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        token_ttl_s: int = 1200,
        faults: FaultSettings | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(BERLIN),
        monotonic: Callable[[], float] = time.monotonic,
        bare_start: bool = False,
    ) -> None:
        """:param bare_start: the seed's compatibility mode: take ``/start`` without a
        method and no ``/prepare`` before it (the API refuses it)."""
        self.seed = seed
        self.bare_start = bare_start
        self._clock = clock
        self._lock = threading.RLock()
        self.faults = FaultInjector(faults)
        self.requests: Counter[str] = Counter()
        # When each API request came (monotonic s) and to which endpoint: the rate the
        # workers call at, for tests of the shared rate limit. The last 100,000 only.
        self.request_times: deque[tuple[float, str]] = deque(maxlen=100_000)
        self.world: World = seeded_world(seed)
        self.engine = Engine(self.world, clock, bare_start=bare_start)
        self.auth = Auth(self.world.ids, monotonic, client_id, client_secret, token_ttl_s)

    # --- entry point ------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> Outcome:
        endpoint, handler = self._route(request)
        if endpoint is None:
            return Outcome(0.0, self._run(handler))
        decision = self.faults.decide(endpoint)
        with self._lock:
            self.requests[endpoint] += 1
            self.request_times.append((time.monotonic(), endpoint))
        rule = decision.rule
        if rule is not None and rule.kind in REFUSING:
            if rule.kind == "reset":
                return Outcome(decision.latency_s, None, "reset")
            return Outcome(decision.latency_s, self._refusal(rule))
        payment = (
            Payment(rule.delay_ms / 1000, rule.ends_as)
            if rule and rule.kind == "processing"
            else Payment()
        )
        response = self._run(handler, payment)
        if rule is None or rule.kind == "processing":
            return Outcome(decision.latency_s, response)
        return self._after_effect(rule, decision.latency_s, response)

    def _after_effect(
        self, rule: FaultRule, latency_s: float, response: SandboxResponse
    ) -> Outcome:
        """A fault that lets the request take effect: how the answer goes wrong."""
        if rule.kind == "slow":
            return Outcome(latency_s + rule.delay_ms / 1000, response)
        # commit_then_lose: the effect is taken, the answer is not the API's.
        if rule.lose_as == "reset":
            return Outcome(latency_s, None, "reset")
        if rule.lose_as == "timeout":
            return Outcome(latency_s + rule.delay_ms / 1000, None, "timeout")
        return Outcome(latency_s, self._gateway_error(int(rule.lose_as)))

    def _run(self, handler: Handler, payment: Payment | None = None) -> SandboxResponse:
        with self._lock:
            self.engine.settle()
            try:
                return handler(payment or Payment())
            except ApiFailure as failure:
                return json_response(failure.http_status, failure.body(self.world.ids.support_id()))
            except OAuthFailure as failure:
                return json_response(failure.http_status, failure.body)

    def _gateway_error(self, status: int) -> SandboxResponse:
        """What a gateway in front of the API answers when the API was too slow for it."""
        if status == 408:
            return SandboxResponse(408, (("content-type", "text/html"),), _PROXY_408)
        with self._lock:
            support_id = self.world.ids.support_id()
        failure = ApiFailure(503, "ProductInternalException", "Service temporarily unavailable")
        return json_response(503, failure.body(support_id))

    def _refusal(self, rule: FaultRule) -> SandboxResponse:
        with self._lock:
            support_id = self.world.ids.support_id()
        if rule.kind == "error_502":
            return SandboxResponse(502, (("content-type", "text/html"),), _PROXY_502)
        if rule.kind == "rate_limit":
            failure = ApiFailure(429, "ProductRateLimitException", "Too many requests")
            return json_response(
                429, failure.body(support_id), ("retry-after", str(rule.retry_after_s))
            )
        status, details = (
            (503, "Service temporarily unavailable")
            if rule.kind == "error_503"
            else (500, "Internal error")
        )
        return json_response(
            status, ApiFailure(status, "ProductInternalException", details).body(support_id)
        )

    # --- routing -----------------------------------------------------------------

    def _route(self, r: SandboxRequest) -> tuple[Endpoint | None, Handler]:
        if r.path.startswith(ADMIN + "/") or r.path == ADMIN:
            return None, lambda _: self._admin(r)
        matched = match_api(r.method, r.path)
        if isinstance(matched, ApiFailure):
            return None, _failing(matched)
        endpoint, tx_id, method = matched
        operations: dict[Endpoint, Handler] = {
            "token": lambda _: json_response(200, self.auth.issue(_form(r))),
            "create": lambda _: self._authorized(r, lambda: self.engine.create(r.json())),
            "list": lambda _: self._list(r),
            "get": lambda _: self._authorized(r, lambda: self.engine.get(tx_id)),
            "start": lambda payment: self._authorized(
                r, lambda: self.engine.start(tx_id, method, payment, r.json())
            ),
            "prepare": lambda _: self._authorized(
                r, lambda: self.engine.prepare(tx_id, method or "")
            ),
            "cancel": lambda _: self._authorized(r, lambda: self.engine.cancel(tx_id)),
        }
        return endpoint, operations[endpoint]

    def _authorized(self, r: SandboxRequest, op: Callable[[], Any]) -> SandboxResponse:
        self.auth.check(r.headers)
        return json_response(200, transaction(self.world, op()))

    def _list(self, r: SandboxRequest) -> SandboxResponse:
        self.auth.check(r.headers)
        count = _int_param(r, "count", 20)
        offset = _int_param(r, "offset", 0)
        total, page = self.engine.list(r.param("q"), count, offset, r.param("sort"))
        return json_response(
            200, {"count": total, "data": [transaction(self.world, tx) for tx in page]}
        )

    # --- admin (never part of the API surface) -------------------------------------

    def _admin(self, r: SandboxRequest) -> SandboxResponse:
        route = (r.method, r.path.removeprefix(ADMIN).rstrip("/"))
        handlers: dict[tuple[str, str], Callable[[], Any]] = {
            ("GET", "/health"): lambda: {"status": "ok"},
            ("GET", "/ledger"): lambda: self._ledger(r.param("card")),
            ("GET", "/outbox"): lambda: self.world.outbox,
            ("GET", "/cards"): lambda: [self._card(n) for n in self.world.cards],
            ("POST", "/cards"): lambda: self._issue_cards(r.json() or {}),
            ("POST", "/reset"): self._reset,
            ("GET", "/faults"): self.faults.settings.model_dump,
            ("PUT", "/faults"): lambda: self._set_faults(r.json()),
            ("GET", "/stats"): self._stats,
            ("GET", "/config"): self._config,
            ("PUT", "/config"): lambda: self._set_config(r.json() or {}),
            ("POST", "/tokens/expire"): lambda: {"expired": self.auth.expire_all()},
        }
        if route[0] == "GET" and route[1].startswith("/cards/"):
            number = route[1].removeprefix("/cards/")
            if number not in self.world.cards:
                raise not_found(f"card {number} not found")
            return json_response(200, self._card(number))
        handler = handlers.get(route)
        if handler is None:
            raise not_found(f"no admin route {r.method} {r.path}")
        return json_response(200, handler())

    def _ledger(self, card: str | None) -> list[dict[str, Any]]:
        return [e for e in self.world.ledger if card is None or e["card_number"] == card]

    def _card(self, number: str) -> dict[str, Any]:
        return merchant_card(self.world, self.world.cards[number])

    def _issue_cards(self, spec: dict[str, Any]) -> dict[str, Any]:
        count = spec.get("count", 1)
        group = spec.get("cardgroup_id", next(iter(self.world.groups)))
        if (
            not isinstance(count, int)
            or not 1 <= count <= 100_000
            or group not in self.world.groups
        ):
            raise invalid("count (1..100000) and a known cardgroup_id required")
        balances = {
            "cash_cents": int(spec.get("cash_balance", 0)),
            "bonus_cents": int(spec.get("bonus_balance", 0)),
        }
        now = self._clock()
        cards = [self.world.issue_card(group, now, **balances) for _ in range(count)]
        for card in cards:
            card.lock_status = str(spec.get("lock_status", "unlocked"))
        return {"cardnumbers": [c.number for c in cards]}

    def _reset(self) -> dict[str, str]:
        self.world = seeded_world(self.seed)
        self.engine = Engine(self.world, self._clock, bare_start=self.bare_start)
        self.auth.ids = self.world.ids
        self.requests.clear()
        return {"status": "reset"}

    def _set_faults(self, body: Any) -> dict[str, Any]:
        try:
            self.faults.configure(FaultSettings.model_validate(body or {}))
        except ValidationError as exc:
            raise invalid(f"faults: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}") from None
        return self.faults.settings.model_dump()

    def _stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "faults_fired": dict(self.faults.fired),
            "transactions": len(self.world.transactions),
            "loads": sum(1 for e in self.world.ledger if e["kind"] == "load"),
        }

    def _config(self) -> dict[str, Any]:
        return {"token_ttl_s": self.auth.token_ttl_s, "client_id": self.auth.client_id}

    def _set_config(self, body: dict[str, Any]) -> dict[str, Any]:
        ttl = body.get("token_ttl_s", self.auth.token_ttl_s)
        if not isinstance(ttl, int) or ttl < 1:
            raise invalid("token_ttl_s: positive integer required")
        self.auth.token_ttl_s = ttl
        return self._config()


def match_api(method: str, path: str) -> tuple[Endpoint, str, str | None] | ApiFailure:
    """Which endpoint a request is for: (endpoint, transaction id, payment method)."""
    endpoint: Endpoint | None = None
    tx_id, payment_method = "", None
    if path == "/oauth/token":
        endpoint = "token" if method == "POST" else None
    elif path == API:
        endpoint = _COLLECTION_ACTIONS.get(method)
    elif match := _TX_PATH.match(path):
        tx_id, action, payment_method = match.group("id", "action", "method")
        if action == "cancel" and payment_method is not None:
            return not_found(f"no route {method} {path}")
        endpoint = _TX_ACTIONS.get((action, method))
    else:
        return not_found(f"no route {method} {path}")
    if endpoint is None:
        return ApiFailure(405, "ProductFormatException", f"{method} not allowed on {path}")
    return endpoint, tx_id, payment_method


def _failing(failure: ApiFailure) -> Handler:
    def handler(_: Payment) -> SandboxResponse:
        raise failure

    return handler


def _form(r: SandboxRequest) -> dict[str, Any]:
    """The token endpoint takes JSON (the docs) or a form (the PHP SDK)."""
    if "json" in r.headers.get("content-type", ""):
        data = r.json()
        return data if isinstance(data, dict) else {}
    return {k: v[0] for k, v in parse_qs(r.body.decode("utf-8", "replace")).items()}


def _int_param(r: SandboxRequest, name: str, default: int) -> int:
    raw = r.param(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise invalid(f"{name}: non-negative integer required")
    return int(raw)
