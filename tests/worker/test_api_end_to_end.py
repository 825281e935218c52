"""``cardload api`` as operators run it (a subprocess on a real socket), with a real
worker and the sandbox: a load submitted, polled to success with the seed's balances;
the same key again; a conflict; every auth failure; an invalid body; a batch with
invalid rows; a dead letter listed and replayed by an operator."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cardload.apikeys import ApiKeyStore
from cardload.config import to_env
from cardload.sandbox import LOCKED_CARD, SEED_CARD
from tests.services import free_port, scratch_dir, wait_for
from tests.worker.conftest import Stack


class ApiProcess:
    def __init__(self, stack: Stack) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARDLOAD_")}
        env |= to_env(stack.settings) | {"PYTHONUNBUFFERED": "1"}
        self.log_path = stack.tmp_path / "api.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cardload.cli.main", "api", "--port", str(self.port)],
            cwd=scratch_dir(),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for(self._ready, 30, "cardload api to answer")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"cardload api exited:\n{self.log_path.read_text()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)
        self._log.close()


@pytest.fixture
def api(running: Stack) -> Iterator[tuple[Stack, httpx.Client, dict[str, str]]]:
    store = ApiKeyStore(running.redis)
    keys = {
        name: store.create(name, scopes)[1]
        for name, scopes in (("shop", ["submit", "read"]), ("ops", ["operate", "read"]))
    }
    process = ApiProcess(running)
    try:
        with httpx.Client(base_url=process.url, timeout=10) as http:
            yield running, http, keys
    finally:
        process.stop()
        log = process.log_path.read_text()
        assert "clk_" not in log and SEED_CARD not in log, "a key or a card number in the log"


def bearer(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} | headers


def poll(http: httpx.Client, key: str, job_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        view: dict[str, Any] = http.get(f"/v1/card-loads/{job_id}", headers=bearer(key)).json()
        return view if view["status"] in ("succeeded", "dead_lettered") else None

    return wait_for(finished, 60, f"job {job_id} to finish")


def test_a_load_over_http_end_to_end(api: tuple[Stack, httpx.Client, dict[str, str]]) -> None:
    stack, http, keys = api
    dining = {
        "desc": "Dining service Puslnitz, 26 pieces",
        "price_one_cents": 5900,
        "tax": 19,
        "article_number": "30200",
    }
    body = {
        "card_number": SEED_CARD,
        "amount_cents": 2000,
        "order_id": "SO-1001",
        "extra_lines": [dining],  # the seed's basket: its bonus
    }
    headers = bearer(keys["shop"], **{"Idempotency-Key": "SO-1001"})
    submitted = http.post("/v1/card-loads", json=body, headers=headers)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    view = poll(http, keys["shop"], job_id)
    assert view["status"] == "succeeded" and view["transaction_id"]
    assert view["balances"] == {"cash_cents": 2200, "bonus_cents": 810, "total_cents": 3010}
    assert view["card_number"] == "927600******4352"
    assert "927600******4352" in view["receipt"]["text"] and SEED_CARD not in str(view)
    assert view["attempts"] == {"create": 1, "start": 1}

    again = http.post("/v1/card-loads", json=body, headers=headers)
    assert again.status_code == 200 and again.json() == {"job_id": job_id, "status": "succeeded"}
    conflict = http.post("/v1/card-loads", json=body | {"amount_cents": 999}, headers=headers)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"
    assert [e["amount_cents"] for e in stack.ledger()] == [2000]  # loaded once

    invalid = http.post(
        "/v1/card-loads",
        json={"card_number": "1234", "amount_cents": 20.5},
        headers=bearer(keys["shop"], **{"Idempotency-Key": "SO-1002"}),
    )
    assert invalid.status_code == 422
    assert {e["field"] for e in invalid.json()["errors"]} == {"card_number", "amount_cents"}
    for wrong in (
        {},
        bearer("clk_000000000000_" + "x" * 43),
        bearer(keys["shop"][:-2] + "zz"),
    ):
        answer = http.post("/v1/card-loads", json=body, headers=wrong | {"Idempotency-Key": "k"})
        assert answer.status_code == 401, wrong
    assert http.get("/v1/dead-letters", headers=bearer(keys["shop"])).status_code == 403
    operate = http.post(
        "/v1/card-loads", json=body, headers=bearer(keys["ops"], **{"Idempotency-Key": "k"})
    )
    assert operate.status_code == 403


def test_a_batch_and_a_dead_letter_over_http(
    api: tuple[Stack, httpx.Client, dict[str, str]],
) -> None:
    stack, http, keys = api
    rows = [
        "card_number;betrag;waehrung;referenz",
        f"{SEED_CARD};20,00;EUR;lohn-1",
        "9276004424;5,00;EUR;lohn-2",
        f"{LOCKED_CARD};7,00;EUR;lohn-3",
    ]
    answer = http.post(
        "/v1/batches",
        params={"name": "lohn-2026-12"},
        content="\n".join(rows).encode(),
        headers=bearer(keys["shop"], **{"Content-Type": "text/csv"}),
    )
    assert answer.status_code == 202, answer.text
    result = answer.json()
    assert (result["enqueued"], [e["row"] for e in result["invalid"]]) == (2, [2])

    def finished() -> dict[str, Any] | None:
        status: dict[str, Any] = http.get(
            "/v1/batches/lohn-2026-12", headers=bearer(keys["shop"])
        ).json()
        return status if status["finished"] else None

    status = wait_for(finished, 60, "the batch to finish")
    assert status["by_status"] == {"succeeded": 1, "dead_lettered": 1}

    letters = http.get("/v1/dead-letters", headers=bearer(keys["ops"])).json()
    assert letters["total"] == 1
    [letter] = letters["items"]
    assert letter["card_number"] == "927600******0001"
    replayed = http.post(f"/v1/dead-letters/{letter['job_id']}/replay", headers=bearer(keys["ops"]))
    assert replayed.status_code == 202
    view = poll(http, keys["ops"], letter["job_id"])  # the card is still locked
    assert view["status"] == "dead_lettered"
    missing = http.post(f"/v1/dead-letters/{'0' * 32}/replay", headers=bearer(keys["ops"]))
    assert missing.status_code == 404
    assert len([e for e in stack.ledger() if e["amount_cents"] == 2000]) == 1
