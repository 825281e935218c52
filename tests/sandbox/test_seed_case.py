"""The seed document's example, end to end over a real socket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cardload.sandbox import SandboxApp, serve_in_thread
from cardload.sandbox.server import SandboxServer
from tests.support import seed

VOLATILE = ("id", "created")


@pytest.fixture(params=["seed-compatible", "as-the-api"])
def server(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    """The seed starts bare (its payment was made before, elsewhere), which only the
    sandbox's seed-compatibility mode takes; the API wants ``/start/{method}``."""
    with serve_in_thread(SandboxApp(bare_start=request.param == "seed-compatible")) as running:
        yield running


def _token(http: httpx.Client, **kw: Any) -> str:
    response = http.post("/oauth/token", **kw)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 1200
    token: str = body["access_token"]
    return token


def test_seed_example_over_http(server: SandboxServer) -> None:
    with httpx.Client(base_url=server.url) as http:
        form = {
            "grant_type": "client_credentials",
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
        }
        _token(http, data=form)  # form-encoded, as the PHP SDK sends it
        token = _token(http, json=form)  # JSON, as the docs send it
        # The seed's own header: "Authenticate: Bearer ..."
        headers = {"Authenticate": f"Bearer {token}", "Accept": "application/json"}

        created = http.post(
            "/api/v2/Smart/Transactions", json=seed("01-create-request.json"), headers=headers
        )
        assert created.status_code == 200, created.text
        expected = seed("02-create-response.json")
        body = created.json()
        assert body["id"].startswith("STX_") and len(body["id"]) == 34
        assert {k: v for k, v in body.items() if k not in VOLATILE} == {
            k: v for k, v in expected.items() if k not in VOLATILE
        }

        path = f"/api/v2/Smart/Transactions/{body['id']}/start"
        if not server.app.bare_start:
            refused = http.post(path, headers=headers)
            assert refused.status_code == 400, refused.text
            assert "payment method required" in refused.json()["error_details"]
            path += "/cash"  # README, "Choices": how a card load is paid
        started = http.post(path, headers=headers)
        assert started.status_code == 200, started.text
        done = started.json()
        excerpt = seed("03-start-response-excerpt.json")
        assert done["status"] == "ok"
        # A fresh sandbox starts its TA codes where the seed's receipt does.
        assert done["receipt"] == excerpt["receipt"]
        card = done["idents"][0]["merchantcard"]
        assert (card["cash_balance"], card["bonus_balance"], card["balance"]) == (2200, 810, 3010)
        assert card["id"] == excerpt["idents"][0]["merchantcard"]["id"]

        ledger = http.get("/_sandbox/ledger").json()
        assert [(e["transaction_id"], e["amount_cents"], e["bonus_cents"]) for e in ledger] == [
            (body["id"], 2000, 790)
        ]
