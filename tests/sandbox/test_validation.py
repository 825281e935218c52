"""Every create request the sandbox refuses, and that a refusal changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cardload.sandbox import LOCKED_CARD, SandboxApp
from tests.support import load_request, seed

Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    def edit(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return edit


def _delete(key: str) -> Edit:
    return lambda body: body.pop(key)


CASES: list[tuple[str, Edit, int, str, str]] = [
    (
        "unknown contract",
        _set("contract.id", "GCR_" + "X" * 30),
        400,
        "ProductFormatException",
        "contract.id",
    ),
    (
        "missing contract",
        _delete("contract"),
        400,
        "ProductFormatException",
        "contract: object required",
    ),
    (
        "unknown device",
        _set("device_source.id", "SDV_" + "X" * 30),
        400,
        "ProductFormatException",
        "device_source.id",
    ),
    (
        "unknown customer",
        _set("customer.id", "PCU_" + "X" * 30),
        400,
        "ProductFormatException",
        "customer.id",
    ),
    (
        "sum mismatch",
        _set("basket_info.sum", 7901),
        400,
        "ProductFormatException",
        "basket_info.sum: 7901 does not equal the basket total 7900",
    ),
    (
        "float amount",
        _set("basket.products.1.priceOne", 2000.0),
        400,
        "ProductFormatException",
        "basket.products[1].priceOne: integer required",
    ),
    (
        "string amount",
        _set("basket.products.1.priceOne", "2000"),
        400,
        "ProductFormatException",
        "basket.products[1].priceOne: integer required",
    ),
    (
        "zero amount",
        _set("basket.products.1.priceOne", 0),
        400,
        "ProductFormatException",
        "basket.products[1].priceOne: must be at least 1",
    ),
    (
        "negative quantity",
        _set("basket.products.0.quantity", -1),
        400,
        "ProductFormatException",
        "basket.products[0].quantity",
    ),
    (
        "float sum",
        _set("basket_info.sum", 7900.0),
        400,
        "ProductFormatException",
        "basket_info.sum: integer required",
    ),
    (
        "currency",
        _set("basket_info.currency", "USD"),
        400,
        "ProductFormatException",
        "basket_info.currency",
    ),
    ("no products", _set("basket.products", []), 400, "ProductFormatException", "basket.products"),
    (
        "bad card number",
        _set("idents.0.value", "92760044"),
        400,
        "ProductFormatException",
        "idents[0].value: card number of 16 digits",
    ),
    (
        "unknown card",
        _set("idents.0.value", "9276999999999999"),
        400,
        "ProductFormatException",
        "idents[0].value: unknown card",
    ),
    (
        "locked card",
        _set("idents.0.value", LOCKED_CARD),
        400,
        "ProductNotAllowedException",
        f"card {LOCKED_CARD} is locked",  # as a real API may: quoting the card
    ),
    (
        "unknown ident type",
        _set("idents.0.type", "iban"),
        400,
        "ProductFormatException",
        "idents[0].type",
    ),
    (
        "unknown card group",
        _set("idents.0", {"type": "create_card", "value": "CRG_" + "X" * 30}),
        400,
        "ProductFormatException",
        "unknown card group",
    ),
    (
        "load without card",
        _set("idents", []),
        400,
        "ProductFormatException",
        "a card is required to load",
    ),
    ("bad intent", _set("intent", "gift"), 400, "ProductFormatException", "intent"),
    (
        "bad tax",
        _set("basket.products.0.tax", 119),
        400,
        "ProductFormatException",
        "tax: must be at most 100",
    ),
    ("merchantRef not text", _set("merchantRef", 42), 400, "ProductFormatException", "merchantRef"),
    (
        "communications without email",
        _set(
            "communications",
            {"action_type": "charge", "template_id": "ETP_6RYLPEWO8O2UPZV83C095P7IQ4GAL1"},
        ),
        400,
        "ProductFormatException",
        "customer.contact.email",
    ),
]


@pytest.mark.parametrize(
    ("edit", "status", "error", "details"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_invalid_create_is_refused_and_changes_nothing(
    app: SandboxApp,
    http: httpx.Client,
    auth: dict[str, str],
    edit: Edit,
    status: int,
    error: str,
    details: str,
) -> None:
    body = seed("01-create-request.json")
    edit(body)
    response = http.post("/api/v2/Smart/Transactions", json=body, headers=auth)
    assert response.status_code == status
    payload = response.json()
    assert payload["status"] == "error"
    assert payload["error"] == error
    assert details in payload["error_details"]
    assert payload["error_user"] and payload["code"] and len(payload["supportId"]) == 32
    assert app.world.transactions == {}


@pytest.mark.parametrize(
    ("template", "detail"),
    [("ETP_" + "X" * 30, "unknown template"), (None, "communications.template_id")],
)
def test_bad_template(
    http: httpx.Client, auth: dict[str, str], template: str | None, detail: str
) -> None:
    body = seed("04-create-request-with-notification.json")
    body["communications"]["template_id"] = template
    response = http.post("/api/v2/Smart/Transactions", json=body, headers=auth)
    assert response.status_code == 400
    assert detail in response.json()["error_details"]


def test_body_must_be_json(http: httpx.Client, auth: dict[str, str]) -> None:
    response = http.post("/api/v2/Smart/Transactions", content=b"{not json", headers=auth)
    assert response.status_code == 400
    assert response.json()["error_details"] == "body: not valid JSON"


def test_missing_wrong_and_expired_tokens_get_403(
    app: SandboxApp, http: httpx.Client, auth: dict[str, str]
) -> None:
    body = load_request("9276004424644352", 500)
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": auth["Authorization"].replace("Bearer", "Basic")},
    ):
        response = http.post("/api/v2/Smart/Transactions", json=body, headers=headers)
        assert response.status_code == 403
        assert response.json()["error"] == "ProductNotAllowedException"
        assert response.json()["error_details"] == "Valid auth token required"
    assert http.post("/_sandbox/tokens/expire").json() == {"expired": 1}
    assert http.get("/api/v2/Smart/Transactions", headers=auth).status_code == 403
    assert app.world.transactions == {}


def test_token_expires_after_its_lifetime() -> None:
    now = [1000.0]
    app = SandboxApp(token_ttl_s=60, monotonic=lambda: now[0])
    from cardload.sandbox import SandboxTransport

    with httpx.Client(base_url="http://sb", transport=SandboxTransport(app)) as http:
        form = {
            "grant_type": "client_credentials",
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
        }
        token = http.post("/oauth/token", json=form).json()
        assert token["expires_in"] == 60
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        now[0] += 59
        assert http.get("/api/v2/Smart/Transactions", headers=headers).status_code == 200
        now[0] += 1
        assert http.get("/api/v2/Smart/Transactions", headers=headers).status_code == 403


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        (
            {
                "grant_type": "password",
                "client_id": "sandbox-client",
                "client_secret": "sandbox-secret",
            },
            400,
            "unsupported_grant_type",
        ),
        (
            {"client_id": "sandbox-client", "client_secret": "sandbox-secret"},
            400,
            "invalid_request",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "sandbox-client"},
            400,
            "invalid_request",
        ),
        (
            {
                "grant_type": "client_credentials",
                "client_id": "sandbox-client",
                "client_secret": "wrong",
            },
            401,
            "invalid_client",
        ),
    ],
)
def test_oauth_errors(http: httpx.Client, form: dict[str, str], status: int, error: str) -> None:
    response = http.post("/oauth/token", json=form)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert "error_description" in response.json()
