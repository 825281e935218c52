"""Load on the sandbox over real HTTP: is it fast enough not to be the bottleneck?

Starts ``cardload sandbox serve`` as its own process, then drives it from client
processes (threads with keep-alive connections) for a fixed time per phase:

  baseline  GET /_sandbox/health           (the server's floor: HTTP + routing)
  load      POST create + POST start       (a whole card load: validation, booking, receipt)
  read      GET /Smart/Transactions/{id}

and prints requests per second per phase and each as a ratio of the baseline
measured in the same run. Bounded: every phase stops after ``--seconds``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

FORM = {
    "grant_type": "client_credentials",
    "client_id": "sandbox-client",
    "client_secret": "sandbox-secret",
}
TX = "/api/v2/Smart/Transactions"


@dataclass(frozen=True)
class Phase:
    url: str
    name: str
    deadline: float
    threads: int
    cards: list[str] = field(default_factory=list)
    tx_ids: list[str] = field(default_factory=list)


def _body(card: str) -> dict[str, Any]:
    line = {
        "id": 1,
        "ean": "4260447149502",
        "desc": "Kartenaufladung 5 EUR",
        "quantity": 1,
        "priceOne": 500,
        "tax": 0,
    }
    return {
        "contract": {"id": "GCR_9OIH9JOL8KIV5PFJBEOS2NN8TCM1DF"},
        "device_source": {"id": "SDV_WPX6NU09Q2NDF0KJD3H584EXJR3XA2"},
        "intent": "sale",
        "idents": [{"type": "card", "value": card}],
        "basket": {"products": [line]},
        "basket_info": {"sum": 500, "currency": "EUR"},
    }


def _one(http: httpx.Client, phase: Phase, headers: dict[str, str], i: int) -> int:
    """One unit of work; returns the number of requests it made."""
    if phase.name == "baseline":
        http.get("/_sandbox/health").raise_for_status()
        return 1
    if phase.name == "load":
        tx = http.post(TX, json=_body(phase.cards[i % len(phase.cards)]), headers=headers)
        tx.raise_for_status()
        http.post(f"{TX}/{tx.json()['id']}/start/cash", headers=headers).raise_for_status()
        return 2
    http.get(f"{TX}/{phase.tx_ids[i % len(phase.tx_ids)]}", headers=headers).raise_for_status()
    return 1


def _connection(phase: Phase, out: list[int]) -> None:
    done = i = 0
    with httpx.Client(base_url=phase.url, timeout=30) as http:
        token = http.post("/oauth/token", json=FORM).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        while time.monotonic() < phase.deadline:
            done += _one(http, phase, headers, i)
            i += 1
    out.append(done)


def _client_process(phase: Phase) -> int:
    out: list[int] = []
    threads = [
        threading.Thread(target=_connection, args=(phase, out)) for _ in range(phase.threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(out)


def _run_phase(pool: Any, a: argparse.Namespace, phase: Phase) -> float:
    start = time.monotonic()
    phase = Phase(phase.url, phase.name, start + a.seconds, a.threads, phase.cards, phase.tx_ids)
    total: int = sum(pool.map(_client_process, [phase] * a.processes))
    return total / (time.monotonic() - start)


def _recent_transactions(url: str) -> list[str]:
    with httpx.Client(base_url=url) as http:
        token = http.post("/oauth/token", json=FORM).json()["access_token"]
        page = http.get(TX, params={"count": 100}, headers={"Authorization": f"Bearer {token}"})
        return [tx["id"] for tx in page.json()["data"]]


def _measure(url: str, a: argparse.Namespace) -> dict[str, float]:
    cards = httpx.post(f"{url}/_sandbox/cards", json={"count": a.cards}).json()["cardnumbers"]
    with mp.get_context("spawn").Pool(a.processes) as pool:
        rates = {
            "baseline": _run_phase(pool, a, Phase(url, "baseline", 0, 0)),
            "load": _run_phase(pool, a, Phase(url, "load", 0, 0, cards)),
        }
        rates["read"] = _run_phase(
            pool, a, Phase(url, "read", 0, 0, tx_ids=_recent_transactions(url))
        )
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description="Load on the sandbox over real HTTP.")
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=8, help="connections per client process")
    parser.add_argument("--cards", type=int, default=1000)
    a = parser.parse_args()

    command = [sys.executable, "-m", "cardload.cli.main", "sandbox", "serve", "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split()[-1]
            rates = _measure(url, a)
            stats = httpx.get(f"{url}/_sandbox/stats").json()
        finally:
            server.terminate()
    names = {
        "baseline": "baseline GET /_sandbox/health",
        "load": "card load (create + start)",
        "read": "GET transaction",
    }
    shape = f"{a.processes} client processes x {a.threads} connections"
    print(f"sandbox load: {shape}, {a.seconds:g} s per phase")
    print(f"{'phase':34} {'requests/s':>11} {'vs baseline':>12}")
    for key, name in names.items():
        print(f"{name:34} {rates[key]:11.0f} {rates[key] / rates['baseline']:12.2f}")
    print(f"card loads/s: {rates['load'] / 2:.0f}; sandbox counted {stats['loads']} loads")
    print(json.dumps({key: round(rate) for key, rate in rates.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
