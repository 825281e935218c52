"""Delivering result events to webhook endpoints: at least once, never again after a 2xx.

Two stages, each safe against a delivery worker that dies at any point:

1. **Fan-out.** The event stream is read through a consumer group. For each event,
   one script writes a delivery per subscribed endpoint (its state, and its place in
   the ``due`` set) and acknowledges the stream entry, all or nothing. Entries a dead
   worker read and never acknowledged are taken over with ``XAUTOCLAIM`` after
   ``CARDLOAD_WEBHOOKS_CLAIM_IDLE_S``.
2. **Delivery.** Due deliveries are claimed by a script that moves each one's due time
   a lease ahead (so no other worker takes it while it is being sent; a dead worker's
   come due again when the lease ends), then POSTed. A 2xx marks the delivery done
   (checked before every send, so it is never sent again); any other answer, or none,
   puts it back with exponential backoff and jitter until
   ``CARDLOAD_WEBHOOKS_RETRY_FOR_S`` after its first try, then into the endpoint's dead
   letters, from which ``cardload webhooks replay`` sends it again.

Redirects are not followed (a 3xx is a failure): a redirect could lead past the check
of the endpoint's address, which is made again before every send.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import redis

from cardload._version import __version__
from cardload.config import Settings
from cardload.jobs import keys
from cardload.jobs.replies import text
from cardload.observability import get_logger
from cardload.webhooks.addresses import AddressRefused, check_url
from cardload.webhooks.endpoints import Endpoint, EndpointStore
from cardload.webhooks.signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    sign,
)

log = get_logger(__name__)

DELIVERED_TTL_S = 30 * 86_400  # the mark of a 2xx outlives every possible repeat
ENDPOINTS_TTL_S = 2.0  # how long a worker uses its copy of the endpoint list

# KEYS: stream, due, then per endpoint its delivery's state and done mark.
# ARGV: group, stream id, event id, type, data, now (ms), then the endpoint ids.
_FAN_OUT = """
local n = #ARGV - 6
for i = 1, n do
  local state, done = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  if redis.call('EXISTS', done) == 0 and redis.call('EXISTS', state) == 0 then
    local id = ARGV[6 + i] .. '|' .. ARGV[3]
    redis.call('HSET', state, 'endpoint', ARGV[6 + i], 'event_id', ARGV[3],
      'type', ARGV[4], 'data', ARGV[5], 'attempts', 0, 'first_at', ARGV[6])
    redis.call('ZADD', KEYS[2], 'NX', ARGV[6], id)
  end
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return n
"""

# KEYS: due. ARGV: now (ms), lease (ms), how many. Claims due deliveries by moving
# their due time a lease ahead.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[1] + ARGV[2], id)
end
return ids
"""


@dataclass(frozen=True)
class Attempt:
    delivery_id: str
    status: int | None  # the HTTP status, None when no answer came
    error: str | None


def delivery_id(endpoint_id: str, event_id: str) -> str:
    return f"{endpoint_id}|{event_id}"


class Deliverer:
    """One delivery worker: fans events out and sends deliveries, ``concurrency`` at a
    time. ``run()`` until ``stop`` is set; ``step()`` is one round (for tests)."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        *,
        consumer: str | None = None,
        concurrency: int = 8,
        http: httpx.Client | None = None,
    ) -> None:
        self.redis = client
        self.settings = settings.webhooks
        self.stream = settings.events.stream
        self.consumer = consumer or f"{socket.gethostname()}-{id(self):x}"
        self.endpoints = EndpointStore(client, self.stream)
        self.concurrency = concurrency
        timeout = self.settings.timeout_s
        self.http = http or httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"User-Agent": f"cardload-webhooks/{__version__}"},
            trust_env=False,  # an endpoint is reached directly, as its address was checked
        )
        # Renewed while a send is under way; a dead worker's ends and its deliveries
        # come due again.
        self.lease_ms = int((2 * timeout + 10) * 1000)
        self._fan_out = client.register_script(_FAN_OUT)
        self._claim = client.register_script(_CLAIM)
        self._cached: tuple[float, list[Endpoint]] = (0.0, [])
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="cardload-webhook")
        self._busy: dict[Future[Attempt | None], str] = {}  # deliveries being sent
        self._renewed = 0.0
        self._group_ready = False

    # --- fan-out --------------------------------------------------------------------

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        # Missing while endpoints exist: the stream was lost and began again, so every
        # entry in it is new ("0"). The first endpoint's ``add`` makes it at "$".
        try:
            self.redis.xgroup_create(self.stream, keys.WEBHOOK_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _endpoints(self, *, fresh: bool = False) -> list[Endpoint]:
        at, cached = self._cached
        if fresh or time.monotonic() - at > ENDPOINTS_TTL_S:
            cached = self.endpoints.all()
            self._cached = (time.monotonic(), cached)
        return cached

    def fan_out(self, block_ms: int = 0) -> int:
        """Turn the events no worker has taken (or a dead one left) into deliveries;
        returns how many events."""
        self._ensure_group()
        idle_ms = int(self.settings.claim_idle_s * 1000)
        try:
            claimed: Any = self.redis.xautoclaim(
                self.stream, keys.WEBHOOK_GROUP, self.consumer, idle_ms, "0-0", count=100
            )
            entries = list(claimed[1])
            trimmed = [text(gone) for gone in (claimed[2] if len(claimed) > 2 else ())]
            if trimmed:  # read by a worker that died, then trimmed away: lost to webhooks
                log.error("webhook.events_trimmed", count=len(trimmed), stream_ids=trimmed[:10])
                self.redis.xack(self.stream, keys.WEBHOOK_GROUP, *trimmed)
            if not entries:
                reply: Any = self.redis.xreadgroup(
                    keys.WEBHOOK_GROUP,
                    self.consumer,
                    {self.stream: ">"},
                    count=100,
                    block=block_ms or None,
                )
                entries = [entry for _, messages in reply or [] for entry in messages]
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc) or "no longer exists" in str(exc):
                self._group_ready = False  # the stream went (a Redis without its data)
            raise
        if not entries:
            return 0
        # Read after the entries: an endpoint added before an event was written is in it.
        endpoints = self._endpoints(fresh=True)
        for stream_id, fields in entries:
            sid = text(stream_id)
            try:
                self._fan_out_one(sid, {text(k): text(v) for k, v in fields.items()}, endpoints)
            except redis.RedisError:
                raise
            except Exception as exc:  # not an event: acknowledged, so it stops no one
                log.error("webhook.unreadable_event", stream_id=sid, error=repr(exc))
                self.redis.xack(self.stream, keys.WEBHOOK_GROUP, sid)
        return len(entries)

    def _fan_out_one(
        self, stream_id: str, fields: dict[str, str], endpoints: list[Endpoint]
    ) -> None:
        event_id, kind, data = fields.get("event_id", ""), fields.get("type", ""), fields["data"]
        if not event_id or not kind:  # written by an older cardload: read it from the data
            parsed = json.loads(data)
            event_id, kind = parsed["event_id"], parsed["type"]
        targets = [e.id for e in endpoints if kind in e.events]
        script_keys = [self.stream, keys.WEBHOOK_DUE]
        for endpoint_id in targets:
            did = delivery_id(endpoint_id, event_id)
            script_keys += [keys.webhook_delivery(did), keys.webhook_delivered(did)]
        now_ms = int(time.time() * 1000)
        args: list[str | int] = [keys.WEBHOOK_GROUP, stream_id, event_id, kind, data, now_ms]
        self._fan_out(keys=script_keys, args=[*args, *targets])

    # --- delivery -------------------------------------------------------------------

    def claim_due(self, limit: int) -> list[str]:
        now_ms = int(time.time() * 1000)
        ids: Any = self._claim(keys=[keys.WEBHOOK_DUE], args=[now_ms, self.lease_ms, limit])
        return [text(i) for i in ids]

    def deliver(self, did: str) -> Attempt | None:
        """Send one claimed delivery and record what came of it (None: nothing to send)."""
        state_key = keys.webhook_delivery(did)
        state = {text(k): text(v) for k, v in self.redis.hgetall(state_key).items()}
        endpoint = self.endpoints.get(state.get("endpoint", "")) if state else None
        if not state or endpoint is None or self.redis.exists(keys.webhook_delivered(did)):
            # Done already, or its endpoint was removed: nothing more to send.
            self.redis.zrem(keys.WEBHOOK_DUE, did)
            if endpoint is None:
                self.redis.delete(state_key)
            return None
        attempt = self._post(did, endpoint, state)
        self._record(did, state, attempt)
        return attempt

    def _post(self, did: str, endpoint: Endpoint, state: dict[str, str]) -> Attempt:
        body = state["data"].encode()
        try:
            address = check_url(
                endpoint.url,
                allow_loopback=self.settings.allow_loopback,
                allow_private=self.settings.allow_private,
            )
            url = httpx.URL(endpoint.url)
            headers = {
                "Host": url.netloc.decode("ascii"),
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(body, endpoint.secret.get_secret_value()),
                EVENT_ID_HEADER: state["event_id"],
                EVENT_TYPE_HEADER: state["type"],
            }
            # To the address checked, not to a second lookup of the name; TLS still
            # checks the certificate against the name.
            extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
            pinned = url.copy_with(host=address)
            # The status is all we read: a body dripping in cannot hold the send open.
            with self.http.stream(
                "POST", pinned, content=body, headers=headers, extensions=extensions
            ) as answer:
                status = answer.status_code
        except AddressRefused as exc:
            return Attempt(did, None, str(exc))
        except Exception as exc:  # every failure to send is an attempt (a bad URL too)
            return Attempt(did, None, f"{type(exc).__name__}: {exc}"[:500])
        ok = 200 <= status < 300
        return Attempt(did, status, None if ok else f"HTTP {status}")

    def _record(self, did: str, state: dict[str, str], attempt: Attempt) -> None:
        state_key = keys.webhook_delivery(did)
        attempts = int(state.get("attempts", 0)) + 1
        fields = {"event_id": state["event_id"], "endpoint": state["endpoint"]}
        if attempt.error is None:
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(keys.webhook_delivered(did), attempt.status or 200, ex=DELIVERED_TTL_S)
            pipe.zrem(keys.WEBHOOK_DUE, did)
            pipe.delete(state_key)
            pipe.execute()
            log.info("webhook.delivered", **fields, status=attempt.status, attempts=attempts)
            return
        now_ms = int(time.time() * 1000)
        first_at = int(state.get("first_at") or now_ms)
        delay_s = random.uniform(
            0, min(self.settings.max_backoff_s, self.settings.base_backoff_s * 2 ** (attempts - 1))
        )
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            state_key,
            mapping={"attempts": attempts, "last_error": attempt.error or "", "last_at": now_ms},
        )
        if now_ms - first_at >= self.settings.retry_for_s * 1000:
            pipe.zrem(keys.WEBHOOK_DUE, did)
            pipe.zadd(keys.WEBHOOK_DEAD, {did: now_ms})
            pipe.execute()
            log.error("webhook.dead_lettered", **fields, attempts=attempts, error=attempt.error)
            return
        pipe.zadd(keys.WEBHOOK_DUE, {did: now_ms + int(delay_s * 1000)})
        pipe.execute()
        log.warning("webhook.failed", **fields, attempts=attempts, error=attempt.error)

    # --- the loop -------------------------------------------------------------------

    def step(self, block_ms: int = 0) -> int:
        """One round: fan out, then start as many due deliveries as there are free
        slots; returns how many were started. With no endpoint it reads nothing (a
        worker without webhooks pays nothing for them)."""
        self._busy = {f: did for f, did in self._busy.items() if not f.done()}
        self._renew_leases()
        if not self._endpoints():
            return 0
        try:
            self.fan_out(block_ms if not self._busy else 0)
        finally:  # deliveries go on while the stream cannot be read
            free = self.concurrency - len(self._busy)
            started = self.claim_due(free) if free > 0 else []
            for did in started:
                self._busy[self._pool.submit(self._deliver_safely, did)] = did
        return len(started)

    def _renew_leases(self) -> None:
        """Deliveries still being sent keep their lease (``XX``: one finished meanwhile
        is not put back), so no other worker sends them while this one waits."""
        now = time.monotonic()
        if not self._busy or now - self._renewed < self.lease_ms / 3000:
            return
        self._renewed = now
        until = int(time.time() * 1000) + self.lease_ms
        self.redis.zadd(keys.WEBHOOK_DUE, dict.fromkeys(self._busy.values(), until), xx=True)

    def _deliver_safely(self, did: str) -> Attempt | None:
        try:
            return self.deliver(did)
        except Exception:  # its lease ends and it is tried again; the loop goes on
            log.exception("webhook.delivery_error", delivery=did)
            return None

    def drain(self, timeout_s: float = 30) -> None:
        """Wait for the deliveries under way (tests, and a clean stop)."""
        deadline = time.monotonic() + timeout_s
        for future in list(self._busy):  # the keys
            future.result(max(0.0, deadline - time.monotonic()))

    def run(self, stop: threading.Event, idle_s: float = 0.5) -> None:
        log.info("webhooks.started", consumer=self.consumer)
        failing = False
        while not stop.is_set():
            try:
                started = self.step(block_ms=int(idle_s * 1000))
                failing = False
            except Exception as exc:  # the thread outlives any one failure; Redis returns
                if not failing:
                    log.warning("webhooks.round_failed", error=repr(exc))
                failing = True
                stop.wait(idle_s)
                continue
            if not started:
                stop.wait(0.05 if self._cached[1] else idle_s)
        self._pool.shutdown(wait=True)
        log.info("webhooks.stopped", consumer=self.consumer)


def start_deliverer(client: redis.Redis, settings: Settings) -> threading.Event:
    """A delivery worker in a daemon thread of this process; set the event to stop it."""
    stop = threading.Event()
    deliverer = Deliverer(client, settings)
    threading.Thread(
        target=deliverer.run, args=(stop,), name="cardload-webhooks", daemon=True
    ).start()
    return stop
