"""Delivery from the event stream: one signed POST per event and endpoint, retried with
backoff, dead-lettered after its period and replayable; a dead delivery worker's
events and deliveries taken over by another; never sent again after a 2xx."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from cardload.config import Settings
from cardload.jobs import keys
from cardload.webhooks import addresses
from cardload.webhooks.dead import DeadDeliveries
from cardload.webhooks.delivery import Deliverer, delivery_id
from cardload.webhooks.endpoints import EndpointStore
from tests.services import wait_for
from tests.support import make_settings
from tests.webhooks.receiver import Receiver, receiving


@pytest.fixture
def settings(redis_url: str, real_redis: redis.Redis) -> Settings:
    return make_settings(
        redis_url,
        "http://sandbox.test",
        webhooks={
            "allow_loopback": True,
            "base_backoff_s": 0.05,
            "max_backoff_s": 0.2,
            "claim_idle_s": 1.0,
            "timeout_s": 2.0,
        },
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving(Receiver()) as running:
        yield running


def add_endpoint(client: redis.Redis, settings: Settings, receiver: Receiver, **kw: Any) -> str:
    endpoint = EndpointStore(client, settings.events.stream).add(receiver.url, **kw)
    receiver.secret = endpoint.secret.get_secret_value()
    return endpoint.id


def append(
    client: redis.Redis, settings: Settings, n: int, kind: str = "succeeded", first: int = 0
) -> list[str]:
    """Events as the job store writes them (event_id, type, data)."""
    ids = []
    for i in range(first, first + n):
        event_id = f"job{i:04d}:{kind}"
        data = json.dumps({"event_id": event_id, "type": f"card_load.{kind}", "amount_cents": i})
        client.xadd(
            settings.events.stream,
            {"event_id": event_id, "type": f"card_load.{kind}", "data": data},
        )
        ids.append(event_id)
    return ids


def one_round(deliverer: Deliverer) -> None:
    deliverer.step()
    deliverer.drain()


def past_every_backoff(deliverer: Deliverer) -> None:
    """A round once every retry due by now has come due: what it sends, it would have
    sent anyway (a negative check cannot wait for a condition)."""
    time.sleep(2.5 * deliverer.settings.max_backoff_s)
    one_round(deliverer)


def run_until(deliverer: Deliverer, done: Any, timeout_s: float = 20) -> None:
    def round_() -> bool:
        one_round(deliverer)
        return bool(done())

    wait_for(round_, timeout_s, "the deliveries")


def test_one_signed_delivery_per_event(
    real_redis: redis.Redis, settings: Settings, receiver: Receiver
) -> None:
    add_endpoint(real_redis, settings, receiver, events=["card_load.succeeded"])
    sent = append(real_redis, settings, 20)
    append(real_redis, settings, 3, kind="failed")  # not subscribed
    deliverer = Deliverer(real_redis, settings)
    run_until(deliverer, lambda: len(receiver.processed) == 20)
    for _ in range(5):  # more rounds send nothing more
        one_round(deliverer)
    assert sorted(receiver.processed) == sent
    assert set(receiver.deliveries.values()) == {1} and set(receiver.acknowledged.values()) == {1}
    assert receiver.bad_signatures == 0
    body = json.loads(receiver.bodies[sent[0]])
    assert body == {"event_id": sent[0], "type": "card_load.succeeded", "amount_cents": 0}
    assert real_redis.zcard(keys.WEBHOOK_DUE) == 0
    pending: Any = real_redis.xpending(settings.events.stream, keys.WEBHOOK_GROUP)
    assert pending["pending"] == 0


def test_events_before_the_first_endpoint_are_not_sent(
    real_redis: redis.Redis, settings: Settings, receiver: Receiver
) -> None:
    append(real_redis, settings, 5)
    add_endpoint(real_redis, settings, receiver, events=["card_load.succeeded"])
    later = append(real_redis, settings, 1, kind="failed", first=100)
    endpoint_all = EndpointStore(real_redis, settings.events.stream).all()[0]
    assert endpoint_all.events == ("card_load.succeeded",)
    EndpointStore(real_redis, settings.events.stream).remove(endpoint_all.id)
    add_endpoint(real_redis, settings, receiver, events=["card_load.failed"])
    deliverer = Deliverer(real_redis, settings)
    fresh = append(real_redis, settings, 2, kind="failed", first=200)
    run_until(deliverer, lambda: len(receiver.processed) == 2)
    # Deliveries run in parallel: no order between events is promised.
    assert sorted(receiver.processed) == fresh and later[0] not in receiver.processed


def test_failures_are_retried_then_delivered_once(
    real_redis: redis.Redis, settings: Settings, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    add_endpoint(real_redis, settings, receiver, events=["card_load.succeeded"])
    sent = append(real_redis, settings, 5)
    deliverer = Deliverer(real_redis, settings)
    run_until(deliverer, lambda: len(receiver.processed) == 5)
    past_every_backoff(deliverer)  # nothing more comes
    assert {receiver.deliveries[e] for e in sent} == {3}
    assert {receiver.acknowledged[e] for e in sent} == {1}


def test_a_redirect_is_a_failure(
    real_redis: redis.Redis, settings: Settings, receiver: Receiver
) -> None:
    receiver.status = 302
    endpoint = add_endpoint(real_redis, settings, receiver, events=["card_load.succeeded"])
    [event] = append(real_redis, settings, 1)
    deliverer = Deliverer(real_redis, settings)
    run_until(deliverer, lambda: receiver.deliveries[event] >= 2)
    state = real_redis.hgetall(keys.webhook_delivery(delivery_id(endpoint, event)))
    assert state[b"last_error"] == b"HTTP 302"


def test_after_its_period_a_delivery_is_dead_and_can_be_replayed(
    real_redis: redis.Redis, settings: Settings, receiver: Receiver
) -> None:
    receiver.status = 503
    endpoint = add_endpoint(real_redis, settings, receiver, events=["card_load.succeeded"])
    [event] = append(real_redis, settings, 1)
    deliverer = Deliverer(real_redis, settings)
    run_until(deliverer, lambda: receiver.deliveries[event] >= 1)
    did = delivery_id(endpoint, event)
    day_ago = int((time.time() - settings.webhooks.retry_for_s) * 1000)
    real_redis.hset(keys.webhook_delivery(did), "first_at", day_ago)  # its first try, a day ago
    run_until(deliverer, lambda: real_redis.zscore(keys.WEBHOOK_DEAD, did) is not None)
    dead = DeadDeliveries(real_redis)
    [entry] = dead.entries(endpoint)
    assert entry.event_id == event and entry.last_error == "HTTP 503"
    assert dead.entries("we_other") == []
    tried = receiver.deliveries[event]
    past_every_backoff(deliverer)
    assert receiver.deliveries[event] == tried  # dead: not tried again by itself
    receiver.status = 200
    assert dead.replay([did, "we_x|nothing"]) == 1
    run_until(deliverer, lambda: receiver.acknowledged[event] == 1)
    assert dead.entries() == [] and real_redis.exists(keys.webhook_delivered(did))


def test_a_removed_endpoint_gets_nothing_more(
    real_redis: redis.Redis, settings: Settings, receiver: Receiver
) -> None:
    receiver.status = 500
    endpoint = add_endpoint(real_redis, settings, receiver, events=["card_load.succeeded"])
    [event] = append(real_redis, settings, 1)
    deliverer = Deliverer(real_redis, settings)
    run_until(deliverer, lambda: receiver.deliveries[event] >= 1)
    deliverer.drain()
    assert EndpointStore(real_redis, settings.events.stream).remove(endpoint)
    assert real_redis.zcard(keys.WEBHOOK_DUE) == 0
    assert not real_redis.exists(keys.webhook_delivery(delivery_id(endpoint, event)))
    tried = receiver.deliveries[event]
    past_every_backoff(deliverer)
    assert receiver.deliveries[event] == tried


def test_a_dead_workers_events_and_deliveries_are_taken_over(
    real_redis: redis.Redis, settings: Settings, receiver: Receiver
) -> None:
    add_endpoint(real_redis, settings, receiver, events=["card_load.succeeded"])
    sent = append(real_redis, settings, 4)
    dead = Deliverer(real_redis, settings, consumer="dead")
    dead._ensure_group()
    # It read two events and died before fanning them out...
    real_redis.xreadgroup(keys.WEBHOOK_GROUP, "dead", {settings.events.stream: ">"}, count=2)
    # ...and claimed the deliveries of the other two, and died before sending them.
    dead.fan_out()
    dead.lease_ms = 1000
    assert len(dead.claim_due(10)) == 2
    other = Deliverer(real_redis, settings, consumer="other")
    assert other.step() == 0  # nothing due yet, nothing idle long enough
    other.drain()
    run_until(other, lambda: len(receiver.processed) == 4)
    assert sorted(receiver.processed) == sent
    assert set(receiver.acknowledged.values()) == {1}


def test_a_delivery_answered_2xx_is_never_sent_again(
    real_redis: redis.Redis, settings: Settings, receiver: Receiver
) -> None:
    endpoint = add_endpoint(real_redis, settings, receiver, events=["card_load.succeeded"])
    [event] = append(real_redis, settings, 1)
    deliverer = Deliverer(real_redis, settings)
    run_until(deliverer, lambda: receiver.acknowledged[event] == 1)
    did = delivery_id(endpoint, event)
    # The same event fanned out again (a repeat of the stream entry) and a stale claim:
    entry_id = real_redis.xadd(
        settings.events.stream,
        {"event_id": event, "type": "card_load.succeeded", "data": receiver.bodies[event]},
    )
    assert entry_id
    real_redis.zadd(keys.WEBHOOK_DUE, {did: 0})
    for _ in range(3):
        one_round(deliverer)
    assert receiver.deliveries[event] == 1


def test_the_delivery_connects_to_the_address_checked(
    real_redis: redis.Redis,
    settings: Settings,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name is resolved once, by the check: a second lookup (DNS rebinding: public
    for the check, internal for the connection) cannot happen. Here the name resolves
    for the check alone: the POST arrives only if it goes to the address checked."""
    port = int(receiver.url.split(":")[2].split("/")[0])
    real_lookup = socket.getaddrinfo

    def lookup(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.invalid":
            return real_lookup("127.0.0.1", *args, **kwargs)
        return real_lookup(host, *args, **kwargs)

    monkeypatch.setattr(addresses, "socket", SimpleNamespace(getaddrinfo=lookup, SOCK_STREAM=1))
    receiver.url = f"http://hooks.invalid:{port}/hooks/cardload"
    add_endpoint(real_redis, settings, receiver, events=["card_load.succeeded"])
    [event] = append(real_redis, settings, 1)
    run_until(Deliverer(real_redis, settings), lambda: receiver.acknowledged[event] == 1)
    assert receiver.hosts == {f"hooks.invalid:{port}"}


def test_an_unreadable_entry_is_set_aside_and_stops_no_one(
    real_redis: redis.Redis, settings: Settings, receiver: Receiver
) -> None:
    add_endpoint(real_redis, settings, receiver, events=["card_load.succeeded"])
    real_redis.xadd(settings.events.stream, {"event_id": "x:succeeded"})  # no data
    real_redis.xadd(settings.events.stream, {"data": "not json"})
    [event] = append(real_redis, settings, 1)
    deliverer = Deliverer(real_redis, settings)
    run_until(deliverer, lambda: receiver.acknowledged[event] == 1)
    pending: Any = real_redis.xpending(settings.events.stream, keys.WEBHOOK_GROUP)
    assert pending["pending"] == 0


def test_deliveries_go_on_after_the_stream_is_lost(
    real_redis: redis.Redis, settings: Settings, receiver: Receiver
) -> None:
    """A Redis that restarted without its data, or a stream deleted: the group is made
    again, and the new stream's events are delivered."""
    add_endpoint(real_redis, settings, receiver, events=["card_load.succeeded"])
    [first] = append(real_redis, settings, 1)
    deliverer = Deliverer(real_redis, settings)
    run_until(deliverer, lambda: receiver.acknowledged[first] == 1)
    real_redis.delete(settings.events.stream)
    with pytest.raises(redis.ResponseError):
        deliverer.step()
    [second] = append(real_redis, settings, 1, first=50)
    run_until(deliverer, lambda: receiver.acknowledged[second] == 1)


def test_a_send_under_way_keeps_its_lease(
    real_redis: redis.Redis, settings: Settings, receiver: Receiver
) -> None:
    """A receiver slower than the lease: the delivery is not taken by another worker
    while the first still waits for the answer."""
    receiver.delay_s = 1.5  # longer than the lease, shorter than the timeout
    add_endpoint(real_redis, settings, receiver, events=["card_load.succeeded"])
    [event] = append(real_redis, settings, 1)
    first = Deliverer(real_redis, settings, consumer="first")
    other = Deliverer(real_redis, settings, consumer="other")
    first.lease_ms = other.lease_ms = 900
    first.step()
    deadline = time.monotonic() + 10
    while receiver.acknowledged[event] == 0 and time.monotonic() < deadline:
        first.step()
        other.step()
        time.sleep(0.1)
    first.drain()
    other.drain()
    assert receiver.deliveries[event] == 1 and receiver.acknowledged[event] == 1


def test_an_endpoint_added_gets_every_event_written_after_it(
    real_redis: redis.Redis, settings: Settings, receiver: Receiver
) -> None:
    add_endpoint(real_redis, settings, receiver, events=["card_load.succeeded"])
    deliverer = Deliverer(real_redis, settings)
    [first] = append(real_redis, settings, 1)
    run_until(deliverer, lambda: receiver.acknowledged[first] == 1)  # its endpoints cached
    with receiving(Receiver()) as other:
        add_endpoint(real_redis, settings, other, events=["card_load.succeeded"])
        [second] = append(real_redis, settings, 1, first=10)
        run_until(deliverer, lambda: other.acknowledged[second] == 1)
    assert first not in other.deliveries
