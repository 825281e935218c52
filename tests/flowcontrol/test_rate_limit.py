"""The shared rate limit on a real Redis: requests per second reserved by GCRA, calls in
flight counted across processes, a call held (not sent) when its turn is too far off,
and the gate that puts breaker and limit in front of every call."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from cardload.config.settings import BreakerSettings, RateLimitSettings
from cardload.flowcontrol import ApiGate, SharedBreaker, SharedRateLimit
from cardload.flowcontrol import breaker as breaker_module
from cardload.secuconnect import CallHeldError, RetryableError


def _limit(
    client: redis.Redis, sleeps: list[float] | None = None, **values: float
) -> SharedRateLimit:
    settings = RateLimitSettings.model_validate(values)
    sleep = sleeps.append if sleeps is not None else time.sleep
    return SharedRateLimit(client, settings, lease_s=30.0, sleep=sleep)


def test_calls_are_spaced_by_the_rate_across_processes(real_redis: redis.Redis) -> None:
    slept_a: list[float] = []
    slept_b: list[float] = []
    a = _limit(real_redis, slept_a, per_s=10, burst=2, max_wait_s=5)
    b = _limit(real_redis, slept_b, per_s=10, burst=2, max_wait_s=5)
    for limit in (a, b, a, b, a):
        limit.wait()
    # Two at once (the burst), then one every 100 ms: the third waits one interval, the
    # fourth two, the fifth three (no time passes: the sleeps are recorded, not slept).
    waits = [round(x, 1) for x in slept_a + slept_b]
    assert sorted(waits) == [0.1, 0.2, 0.3]


def test_a_turn_too_far_off_is_held_not_reserved(real_redis: redis.Redis) -> None:
    slept: list[float] = []
    limit = _limit(real_redis, slept, per_s=1, burst=1, max_wait_s=2)
    limit.wait()
    limit.wait()  # waits 1 s (recorded)
    limit.wait()  # 2 s
    with pytest.raises(CallHeldError) as held:
        limit.wait()  # 3 s: more than max_wait_s
    assert held.value.retry_after_s > 2 and isinstance(held.value, RetryableError)
    with pytest.raises(CallHeldError):
        limit.wait()  # nothing was reserved by the held one: still 3 s off


def test_calls_in_flight_never_exceed_the_limit(real_redis: redis.Redis) -> None:
    limits = [_limit(real_redis, in_flight=3, max_wait_s=10) for _ in range(2)]  # 2 processes
    lock = threading.Lock()
    running = [0]
    most = [0]

    def call(limit: SharedRateLimit) -> None:
        for _ in range(10):
            token = limit.wait()
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.01)  # the call
            with lock:
                running[0] -= 1
            limit.leave(token)

    threads = [threading.Thread(target=call, args=(limits[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 3  # reached, never passed
    assert real_redis.zcard("cardload:api:in_flight") == 0


def test_no_limit_costs_no_redis_call(real_redis: redis.Redis) -> None:
    limit = _limit(real_redis)
    real_redis.config_resetstat()
    assert limit.wait() is None
    assert "cmdstat_evalsha" not in real_redis.info("commandstats")


def test_a_429_slows_every_process_down(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(breaker_module, "REFRESH_S", 0.0)
    breaker_settings = BreakerSettings()
    gates = []
    slept: list[float] = []
    for _ in range(2):
        breaker = SharedBreaker(real_redis, breaker_settings)
        gates.append(ApiGate(breaker, _limit(real_redis, slept)))
    ticket = gates[0].enter("start")
    gates[0].leave(ticket, 429, None, "2")
    gates[1].enter("create")  # another process: it waits first
    assert len(slept) == 1 and 1.5 < slept[0] <= 2
    assert gates[1].breaker.view().state == "closed"  # a 429 is not a failure


def test_the_gate_tells_the_breaker_how_calls_ended(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(breaker_module, "REFRESH_S", 0.0)
    settings = BreakerSettings(failures=3)
    gate = ApiGate(SharedBreaker(real_redis, settings), _limit(real_redis))
    gate.leave(gate.enter("create"), 503, None, None)
    gate.leave(gate.enter("create"), None, RetryableError("not sent"), None)
    gate.leave(gate.enter("get"), 404, None, None)  # the API answers: the run ends
    assert gate.breaker.view().failures == 0
    for _ in range(3):
        gate.leave(gate.enter("start"), 502, None, None)
    with pytest.raises(CallHeldError, match="circuit breaker is open"):
        gate.enter("get")
    assert gate.held_for() > 0
