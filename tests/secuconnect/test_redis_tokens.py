"""The shared token cache: one fetch for many processes' threads, not a stampede."""

from __future__ import annotations

import threading
import time

import fakeredis

from secuconnect.models import OAuthToken
from secuconnect.tokens import RedisTokenSource


def test_one_fetch_for_many_concurrent_callers(fake_redis: fakeredis.FakeRedis) -> None:
    fetched: list[int] = []

    def fetch() -> OAuthToken:
        fetched.append(1)
        time.sleep(0.2)  # a slow token endpoint: the others must wait, not fetch too
        return OAuthToken.model_validate(
            {"access_token": f"tok-{len(fetched)}", "expires_in": 1200}
        )

    # Each "process" has its own source; they share only Redis.
    sources = [RedisTokenSource(fake_redis, fetch, key="t", lock_key="l") for _ in range(8)]
    results: list[str] = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.token())) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["tok-1"] * 8
    assert len(fetched) == 1
    assert 1100 < fake_redis.pttl("t") / 1000 <= 1170  # expires_in - margin


def test_invalidate_only_drops_the_refused_token(fake_redis: fakeredis.FakeRedis) -> None:
    counter = iter(range(1, 100))

    def fetch() -> OAuthToken:
        return OAuthToken.model_validate(
            {"access_token": f"tok-{next(counter)}", "expires_in": 1200}
        )

    a = RedisTokenSource(fake_redis, fetch, key="t", lock_key="l")
    b = RedisTokenSource(fake_redis, fetch, key="t", lock_key="l")
    assert a.token() == "tok-1"
    a.invalidate("tok-1")
    assert b.token() == "tok-2"  # b had no local copy: it sees the refresh
    b.invalidate("tok-1")  # stale: someone already replaced it
    assert a.token() == "tok-2"
