"""What one API call costs the client's CPU: the secuconnect client over httpx's own
transport (httpcore and h11, the baseline) against the same client over
``StdlibTransport`` (``cardload/secuconnect/transport.py``), in one run.

Both read the same transaction from a sandbox process (0 ms added latency) with one
connection kept alive, alternating rounds so drift of the machine falls on both. CPU
is this process's user + system time per call (the sandbox's is not counted).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import httpx
from stack import bench_settings, sandbox_process

from cardload.config import Settings
from cardload.jobs import CardLoadJob
from cardload.pipeline.request import build_create_request
from cardload.secuconnect import (
    Credentials,
    MemoryTokenSource,
    SecuconnectClient,
    build_http,
    fetch_token,
)


def _client(settings: Settings, transport: httpx.BaseTransport | None) -> SecuconnectClient:
    secu = settings.secuconnect
    assert secu.client_id and secu.client_secret
    http = build_http(secu.base_url, transport=transport)
    credentials = Credentials(secu.client_id, secu.client_secret)
    return SecuconnectClient(http, MemoryTokenSource(lambda: fetch_token(http, credentials)))


def _cpu_us_per_call(client: SecuconnectClient, tx_id: str, calls: int) -> float:
    begin = time.process_time()
    for _ in range(calls):
        client.get(tx_id)
    return (time.process_time() - begin) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description="Client CPU per API call, by transport.")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args()
    with sandbox_process(0) as url:
        card = httpx.post(f"{url}/_sandbox/cards", json={"count": 1}).json()["cardnumbers"][0]
        settings = bench_settings("redis://unused", url)
        clients = {
            "httpx": _client(settings, httpx.HTTPTransport()),
            "stdlib": _client(settings, None),  # build_http's default
        }
        secu = settings.secuconnect
        assert secu.contract_id and secu.device_id
        job = CardLoadJob(idempotency_key="bench-http", card_number=card, amount_cents=100)
        request = build_create_request(job, contract_id=secu.contract_id, device_id=secu.device_id)
        tx_id = clients["stdlib"].create(request).id
        rows: dict[str, list[float]] = {name: [] for name in clients}
        for round_ in range(a.rounds):
            order = list(clients) if round_ % 2 == 0 else list(reversed(clients))
            for name in order:
                _cpu_us_per_call(clients[name], tx_id, 100)  # warm
                rows[name].append(_cpu_us_per_call(clients[name], tx_id, a.calls))
            print(f"round {round_ + 1}: " + ", ".join(f"{n} {rows[n][-1]:.0f} us" for n in rows))
        for client in clients.values():
            client.close()
    med = {name: statistics.median(values) for name, values in rows.items()}
    print(
        f"\nGET of one transaction, {a.calls} calls x {a.rounds} rounds, medians: "
        f"stdlib {med['stdlib']:.0f} us vs httpx {med['httpx']:.0f} us of client CPU per call "
        f"(x{med['stdlib'] / med['httpx']:.2f})"
    )
    print(json.dumps({k: [round(x) for x in v] for k, v in rows.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
