"""The shared circuit breaker on a real Redis, as several processes see it (one
``SharedBreaker`` each): it opens after failures in a row or at once on refused
credentials, holds every process's calls, lets one probe through, and closes (or opens
again, longer) on the probe's outcome."""

from __future__ import annotations

import pytest
import redis

from cardload.config.settings import BreakerSettings
from cardload.flowcontrol import SharedBreaker
from cardload.flowcontrol import breaker as breaker_module
from cardload.jobs import keys
from cardload.observability.metrics import BREAKER_STATE


@pytest.fixture(autouse=True)
def _fresh_views(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(breaker_module, "REFRESH_S", 0.0)  # every ask reads Redis


def _breaker(client: redis.Redis, **settings: float) -> SharedBreaker:
    values = {"failures": 3, "open_s": 5.0, "max_open_s": 60.0, "probe_timeout_s": 5.0}
    return SharedBreaker(client, BreakerSettings.model_validate(values | settings))


def _due(client: redis.Redis) -> None:
    """As if the open period had passed (Redis's clock decides)."""
    client.hset(keys.BREAKER, "open_until_ms", 0)


def test_failures_in_a_row_open_it_for_every_process(real_redis: redis.Redis) -> None:
    a, b = _breaker(real_redis), _breaker(real_redis)
    a.failed("server_error")
    a.succeeded()  # a success ends the run of failures
    a.failed("server_error")
    b.failed("server_error")
    assert b.view().state == "closed" and b.view().failures == 2
    assert a.admit() == (True, 0.0, False)
    b.failed("server_error")
    view = a.view()
    assert view.state == "open" and view.reason == "server_error" and 4 < view.open_for_s <= 5
    go, wait_s, _ = a.admit()
    assert not go and 4 < wait_s <= 5
    assert b.open_for() > 4  # and held before a step claims its job
    assert BREAKER_STATE._value.get() == 2


def test_refused_credentials_open_it_at_once(real_redis: redis.Redis) -> None:
    a = _breaker(real_redis)
    a.failed("credentials_refused", at_once=True)
    assert a.view().state == "open" and a.view().reason == "credentials_refused"


def test_one_hosts_refused_credentials_do_not_stop_hosts_whose_calls_succeed(
    real_redis: redis.Redis,
) -> None:
    """A host with a wrong secret among hosts with the right one: its refusals are
    counted like any failure, not a reason to stop everyone at once."""
    good, bad = _breaker(real_redis), _breaker(real_redis)
    good.succeeded()  # noted: calls succeed elsewhere
    bad.failed("credentials_refused", at_once=True)
    assert good.view().state == "closed" and good.view().failures == 1


def test_a_late_failure_from_before_the_opening_leaves_the_probe_to_decide(
    real_redis: redis.Redis,
) -> None:
    a, b = _breaker(real_redis), _breaker(real_redis)
    a.failed("x", at_once=True)
    _due(real_redis)
    assert a.admit()[2]  # a probes
    b.failed("no_answer")  # b's call, sent before the opening, times out now
    assert a.view().state == "half_open"
    a.succeeded()
    assert b.view().state == "closed"


def test_a_probe_not_sent_lets_another_probe_at_once(real_redis: redis.Redis) -> None:
    a, b = _breaker(real_redis), _breaker(real_redis)
    a.failed("x", at_once=True)
    _due(real_redis)
    assert a.admit()[2]
    assert not b.admit()[0]
    a.unprobe()  # a's probe was held (rate limit) and never sent
    assert b.admit()[2]


def test_one_probe_at_a_time_and_its_success_closes_it(real_redis: redis.Redis) -> None:
    a, b = _breaker(real_redis), _breaker(real_redis)
    a.failed("x", at_once=True)
    _due(real_redis)
    assert a.admit() == (True, 0.0, True)  # a is the probe
    assert a.view().state == "half_open"
    go, wait_s, _ = b.admit()
    assert not go and wait_s > 0  # b waits for a's probe
    b.succeeded()  # a straggler of b's (under way before): it is not the probe
    assert a.view().state == "half_open"
    a.succeeded()
    view = b.view()
    assert view.state == "closed" and view.failures == 0
    assert real_redis.hget(keys.BREAKER, "openings") == b"0"  # the next opening is short
    assert b.admit() == (True, 0.0, False)


def test_a_failed_probe_opens_it_again_for_longer(real_redis: redis.Redis) -> None:
    a = _breaker(real_redis, open_s=2.0)
    a.failed("x", at_once=True)
    assert 1 < a.view().open_for_s <= 2
    _due(real_redis)
    assert a.admit()[0]
    a.failed("server_error")  # the probe's own call
    view = a.view()
    assert view.state == "open" and 3 < view.open_for_s <= 4  # doubled


def test_a_probe_that_never_reports_back_lets_another_probe(real_redis: redis.Redis) -> None:
    a, b = _breaker(real_redis), _breaker(real_redis)
    a.failed("x", at_once=True)
    _due(real_redis)
    assert a.admit()[0]  # a probes, and dies
    assert not b.admit()[0]
    real_redis.delete(keys.BREAKER_PROBE)  # its lease ran out
    assert b.admit()[0]


def test_a_pause_asked_by_a_429_is_every_processs(real_redis: redis.Redis) -> None:
    a, b = _breaker(real_redis), _breaker(real_redis)
    a.pause(3.0)
    assert 2 < b.paused_for() <= 3
    a.pause(1.0)  # a shorter one does not shorten it
    assert 2 < b.paused_for() <= 3
