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
import time
from typing import Any

import httpx

FORM = {"grant_type": "client_credentials", "client_id": "sandbox-client", "client_secret": "sandbox-secret"}
TX = "/api/v2/Smart/Transactions"


def _body(card: str) -> dict[str, Any]:
    line = {"id": 1, "ean": "4260447149502", "desc": "Kartenaufladung 5 EUR", "quantity": 1, "priceOne": 500, "tax": 0}
    return {
        "contract": {"id": "GCR_9OIH9JOL8KIV5PFJBEOS2NN8TCM1DF"},
        "device_source": {"id": "SDV_WPX6NU09Q2NDF0KJD3H584EXJR3XA2"},
        "intent": "sale",
        "idents": [{"type": "card", "value": card}],
        "basket": {"products": [line]},
        "basket_info": {"sum": 500, "currency": "EUR"},
    }


def _thread_loop(url: str, phase: str, cards: list[str], deadline: float, out: list[int], tx_ids: list[str]) -> None:
    done = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        headers = {"Authorization": "Bearer " + http.post("/oauth/token", json=FORM).json()["access_token"]}
        i = 0
        while time.monotonic() < deadline:
            if phase == "baseline":
                http.get("/_sandbox/health").raise_for_status()
                done += 1
            elif phase == "load":
                tx = http.post(TX, json=_body(cards[i % len(cards)]), headers=headers)
                tx.raise_for_status()
                http.post(f"{TX}/{tx.json()['id']}/start", headers=headers).raise_for_status()
                done += 2
            else:
                http.get(f"{TX}/{tx_ids[i % len(tx_ids)]}", headers=headers).raise_for_status()
                done += 1
            i += 1
    out.append(done)


def _client_process(args: tuple[str, str, list[str], float, int, list[str]]) -> int:
    import threading

    url, phase, cards, deadline, threads, tx_ids = args
    out: list[int] = []
    workers = [
        threading.Thread(target=_thread_loop, args=(url, phase, cards, deadline, out, tx_ids)) for _ in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(out)


def _phase(pool: Any, url: str, phase: str, cards: list[str], tx_ids: list[str], a: argparse.Namespace) -> float:
    start = time.monotonic()
    deadline = start + a.seconds
    jobs = [(url, phase, cards, deadline, a.threads, tx_ids)] * a.processes
    total = sum(pool.map(_client_process, jobs))
    return total / (time.monotonic() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=8, help="threads (connections) per client process")
    parser.add_argument("--cards", type=int, default=1000)
    a = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "sandbox", "serve", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        cards = httpx.post(f"{url}/_sandbox/cards", json={"count": a.cards}).json()["cardnumbers"]
        with mp.get_context("spawn").Pool(a.processes) as pool:
            baseline = _phase(pool, url, "baseline", cards, [], a)
            load = _phase(pool, url, "load", cards, [], a)
            with httpx.Client(base_url=url) as http:
                headers = {"Authorization": "Bearer " + http.post("/oauth/token", json=FORM).json()["access_token"]}
                tx_ids = [tx["id"] for tx in http.get(TX, params={"count": 100}, headers=headers).json()["data"]]
            read = _phase(pool, url, "read", cards, tx_ids, a)
        stats = httpx.get(f"{url}/_sandbox/stats").json()
    finally:
        server.terminate()
        server.wait(10)
    rows = [("baseline GET /_sandbox/health", baseline), ("card load (create + start)", load), ("GET transaction", read)]
    print(f"sandbox load: {a.processes} client processes x {a.threads} connections, {a.seconds:g} s per phase")
    print(f"{'phase':34} {'requests/s':>11} {'vs baseline':>12}")
    for name, rate in rows:
        print(f"{name:34} {rate:11.0f} {rate / baseline:12.2f}")
    print(f"card loads/s: {load / 2:.0f}; sandbox counted {stats['loads']} loads, {stats['transactions']} transactions")
    print(json.dumps({"baseline_rps": round(baseline), "load_rps": round(load), "read_rps": round(read)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
