"""Connecting to the job store's Redis, plain or behind Sentinel.

``redis+sentinel://[:password@]host:port[,host:port...]/service[/db]`` names the
Sentinels that watch a primary (``service``, Sentinel's master name) and its
replicas: every connection goes to whichever is the primary now, and after a failover
to the replica promoted. Writes the old primary had not yet passed on are lost with it
(Redis replicates asynchronously); the scripts notice the new server (its ``run_id``)
and every step of a job written before reads the API before it acts. The Sentinels
themselves are asked without a password (protect them by network, or use ACLs that
let the client ask them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import redis
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel://"


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        rest = url.removeprefix(SENTINEL_SCHEME)
        userinfo, at, rest = rest.rpartition("@")
        password = unquote(userinfo.partition(":")[2]) if at else None
        hosts, _, path = rest.partition("/")
        parts = [p for p in path.split("/") if p]
        if not hosts or not parts:
            raise ValueError("write it as redis+sentinel://host:port[,host:port]/service[/db]")
        sentinels = []
        for host in hosts.split(","):
            split = urlsplit(f"//{host}")
            sentinels.append((split.hostname or "127.0.0.1", split.port or 26379))
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()) or "?" in path:
            raise ValueError("write it as redis+sentinel://host:port[,host:port]/service[/db]")
        db = int(parts[1]) if len(parts) > 1 else 0
        return cls(tuple(sentinels), unquote(parts[0]), db, password or None)

    def kombu_url(self) -> str:
        """The same for kombu's Sentinel transport (``master_name`` goes in its options)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        hosts = [(f"[{h}]" if ":" in h else h, p) for h, p in self.sentinels]  # IPv6
        return ";".join(f"sentinel://{auth}{h}:{p}/{self.db}" for h, p in hosts)


def connect(url: str, **options: Any) -> redis.Redis:
    """A client for ``url``: ``redis://``, ``rediss://``, ``unix://`` or Sentinel's."""
    if not url.startswith(SENTINEL_SCHEME):
        return redis.Redis.from_url(url, **options)
    found = SentinelUrl.parse(url)
    timeouts = {k: v for k, v in options.items() if k in ("socket_timeout",)}
    sentinel = Sentinel(list(found.sentinels), sentinel_kwargs=timeouts or None)
    client: redis.Redis = sentinel.master_for(
        found.service, db=found.db, password=found.password, **options
    )
    return client
