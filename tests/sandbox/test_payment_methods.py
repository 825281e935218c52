"""Start and prepare as the API takes them, and payments that end in each final status."""

from __future__ import annotations

import httpx
import pytest

from cardload.sandbox import SEED_CARD, SandboxApp, SandboxTransport
from cardload.secuconnect import build_http
from cardload.secuconnect.methods import PREPARE_METHODS, START_METHODS
from cardload.secuconnect.statuses import MEANINGS, StatusMeaning
from tests.support import load_request

TX = "/api/v2/Smart/Transactions"


def _created(http: httpx.Client, auth: dict[str, str], cents: int = 1000) -> str:
    response = http.post(TX, json=load_request(SEED_CARD, cents), headers=auth)
    assert response.status_code == 200, response.text
    tx_id: str = response.json()["id"]
    return tx_id


def _cash(http: httpx.Client) -> int:
    balance: int = http.get(f"/_sandbox/cards/{SEED_CARD}").json()["cash_balance"]
    return balance


def test_a_bare_start_without_a_prepare_is_refused_and_changes_nothing(
    http: httpx.Client, auth: dict[str, str]
) -> None:
    tx_id = _created(http, auth)
    before = _cash(http)
    for path in (f"{TX}/{tx_id}/start", f"{TX}/{tx_id}/start/"):
        refused = http.post(path, headers=auth)
        assert refused.status_code == 400
        assert refused.json()["error"] == "ProductFormatException"
        assert "payment method required" in refused.json()["error_details"]
    assert http.get(f"{TX}/{tx_id}", headers=auth).json()["status"] == "created"
    assert _cash(http) == before and http.get("/_sandbox/ledger").json() == []


def test_seed_compatibility_mode_takes_a_bare_start(auth: dict[str, str]) -> None:
    app = SandboxApp(bare_start=True)
    with build_http("http://sandbox.test", transport=SandboxTransport(app)) as http:
        token = http.post(
            "/oauth/token",
            json={
                "grant_type": "client_credentials",
                "client_id": "sandbox-client",
                "client_secret": "sandbox-secret",
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        tx_id = _created(http, headers)
        started = http.post(f"{TX}/{tx_id}/start", headers=headers)
        assert started.status_code == 200 and started.json()["status"] == "ok"
        # The mode survives a reset (tests reset between cases).
        http.post("/_sandbox/reset")
        assert app.engine.bare_start


@pytest.mark.parametrize("method", sorted(START_METHODS - {"cashless_direct"}))
def test_every_start_method_loads_the_card(
    http: httpx.Client, auth: dict[str, str], method: str
) -> None:
    tx_id = _created(http, auth)
    before = _cash(http)
    started = http.post(f"{TX}/{tx_id}/start/{method}", headers=auth)
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "ok" and _cash(http) == before + 1000


def test_cashless_direct_needs_the_terminals_tid_and_trace(
    http: httpx.Client, auth: dict[str, str]
) -> None:
    tx_id = _created(http, auth)
    refused = http.post(f"{TX}/{tx_id}/start/cashless_direct", headers=auth)
    assert refused.status_code == 400 and "tid and trace" in refused.json()["error_details"]
    body = {"tid": "52500010", "trace": "000123"}
    started = http.post(f"{TX}/{tx_id}/start/cashless_direct", json=body, headers=auth)
    assert started.status_code == 200, started.text


@pytest.mark.parametrize("method", ["creditcard", "paypal", "bitcoin", "CASH"])
def test_methods_start_does_not_take_are_refused(
    http: httpx.Client, auth: dict[str, str], method: str
) -> None:
    tx_id = _created(http, auth)
    refused = http.post(f"{TX}/{tx_id}/start/{method}", headers=auth)
    assert refused.status_code == 400 and method in refused.json()["error_details"]
    assert http.get(f"{TX}/{tx_id}", headers=auth).json()["status"] == "created"


@pytest.mark.parametrize("method", sorted(PREPARE_METHODS))
def test_a_prepare_lets_a_bare_start_pay_with_its_method(
    app: SandboxApp, http: httpx.Client, auth: dict[str, str], method: str
) -> None:
    tx_id = _created(http, auth)
    prepared = http.post(f"{TX}/{tx_id}/prepare/{method}", headers=auth)
    assert prepared.status_code == 200 and prepared.json()["status"] == "created"
    # The PHP SDK starts a prepared transaction with an empty method: ".../start/".
    started = http.post(f"{TX}/{tx_id}/start/", headers=auth)
    assert started.status_code == 200 and started.json()["status"] == "ok"
    assert app.world.transactions[tx_id].payment_method == method


def test_prepare_refuses_what_it_cannot_prepare_and_start_keeps_to_the_prepared_method(
    http: httpx.Client, auth: dict[str, str]
) -> None:
    tx_id = _created(http, auth)
    for method in ("cash", "loyalty", ""):
        assert http.post(f"{TX}/{tx_id}/prepare/{method}", headers=auth).status_code == 400
    assert http.post(f"{TX}/{tx_id}/prepare/invoice", headers=auth).status_code == 200
    other = http.post(f"{TX}/{tx_id}/start/cash", headers=auth)
    assert other.status_code == 400 and "prepared for invoice" in other.json()["error_details"]
    assert http.post(f"{TX}/{tx_id}/start/invoice", headers=auth).status_code == 200
    again = http.post(f"{TX}/{tx_id}/prepare/invoice", headers=auth)
    assert again.status_code == 400 and again.json()["error"] == "ProductNotAllowedException"


FINAL = sorted(
    s for s, m in MEANINGS.items() if m not in (StatusMeaning.OPEN, StatusMeaning.RUNNING)
)


@pytest.mark.parametrize("status", FINAL)
@pytest.mark.parametrize("delay_ms", [0, 200])
def test_a_payment_ends_in_the_status_the_fault_names(
    app: SandboxApp,
    http: httpx.Client,
    auth: dict[str, str],
    status: str,
    delay_ms: int,
) -> None:
    rule = {"kind": "processing", "endpoint": "start", "delay_ms": delay_ms, "ends_as": status}
    assert http.put("/_sandbox/faults", json={"rules": [rule]}).status_code == 200
    tx_id = _created(http, auth)
    before = _cash(http)
    started = http.post(f"{TX}/{tx_id}/start/cash", headers=auth).json()
    assert started["status"] == ("processing" if delay_ms else status)
    if delay_ms:
        app.engine.settle()  # before its time: still processing
        assert http.get(f"{TX}/{tx_id}", headers=auth).json()["status"] == "processing"
        app.world.transactions[tx_id].completes_at = app.world.transactions[tx_id].created
    assert http.get(f"{TX}/{tx_id}", headers=auth).json()["status"] == status
    paid = MEANINGS[status] is StatusMeaning.PAID
    assert _cash(http) == before + (1000 if paid else 0)


@pytest.mark.parametrize("status", ["processing", "created", "settling"])
def test_a_payment_cannot_end_in_a_status_that_is_not_final(
    http: httpx.Client, status: str
) -> None:
    rule = {"kind": "processing", "endpoint": "start", "ends_as": status}
    refused = http.put("/_sandbox/faults", json={"rules": [rule]})
    assert refused.status_code == 400 and "ends_as" in refused.text
