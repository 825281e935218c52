"""``cardload demo``: the seed document's example, end to end against the sandbox over HTTP."""

from __future__ import annotations

import argparse
from typing import Any

import httpx
from pydantic import SecretStr

from sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SEED_CARD, SandboxApp, serve_in_thread
from sandbox.world import CONTRACT_ID, CUSTOMER_ID, DEVICE_ID, TEMPLATE_ID
from secuconnect import (
    LOAD_EAN,
    Balances,
    CreateSmartTransaction,
    Credentials,
    MemoryTokenSource,
    SecuconnectClient,
    build_http,
    fetch_token,
)
from secuconnect.money import format_money_de
from secuconnect.receipt import render_receipt

SEED_BALANCES_AFTER = Balances(cash_cents=2200, bonus_cents=810, total_cents=3010)


def register(commands: Any) -> None:
    demo = commands.add_parser("demo", help="run the seed example against a private sandbox")
    demo.set_defaults(run=_run)


def seed_request(*, with_notification: bool = False) -> CreateSmartTransaction:
    """The seed's create request; with a notification, its second example."""
    load_line: dict[str, Any] = {
        "id": 2 if not with_notification else 1,
        "ean": LOAD_EAN,
        "articleNumber": None,
        "desc": "Kartenaufladung 20 EUR",
        "quantity": 1,
        "priceOne": 2000,
        "tax": 0,
    }
    dining: dict[str, Any] = {
        "id": 1,
        "articleNumber": 30200,
        "desc": "Dining service Puslnitz, 26 pieces",
        "quantity": 1,
        "priceOne": 5900,
        "tax": 19,
    }
    products = [load_line] if with_notification else [dining, load_line]
    body: dict[str, Any] = {
        "is_demo": True,
        "contract": {"id": CONTRACT_ID},
        "device_source": {"id": DEVICE_ID},
        "customer": {"id": CUSTOMER_ID},
        "intent": "sale",
        "idents": [{"type": "card", "value": SEED_CARD}],
        "basket": {"products": products},
        "basket_info": {"sum": sum(p["priceOne"] for p in products), "currency": "EUR"},
    }
    if with_notification:
        body["customer"] = {
            "contact": {
                "salutation": "Mr.",
                "title": "Dr.",
                "forename": "Max",
                "surname": "Mustermann",
                "address": {
                    "street": "Musterstr.",
                    "street_number": "25 b",
                    "postal_code": "99999",
                    "city": "Musterstadt",
                    "country": "DE",
                },
                "email": "max123@example.org",
            }
        }
        body["communications"] = {"action_type": "charge", "template_id": TEMPLATE_ID}
    return CreateSmartTransaction.model_validate(body)


def _balances(b: Balances | None) -> str:
    if b is None:
        return "(no card)"
    return (
        f"cash {format_money_de(b.cash_cents)}, bonus {format_money_de(b.bonus_cents)}, "
        f"balance {format_money_de(b.total_cents)}"
    )


def _run(_: argparse.Namespace) -> int:
    with serve_in_thread(SandboxApp()) as server, build_http(server.url) as http:
        print(f"sandbox: {server.url} (real HTTP, a private instance)")
        credentials = Credentials(DEFAULT_CLIENT_ID, SecretStr(DEFAULT_CLIENT_SECRET))
        client = SecuconnectClient(http, MemoryTokenSource(lambda: fetch_token(http, credentials)))

        created = client.create(seed_request())
        print(f"\ncreated {created.id} status={created.status}")
        print(f"  card {created.card_number} before: {_balances(created.balances)}")
        started = client.start(created.id)
        print(f"started {started.id} status={started.status}")
        print(f"  card {started.card_number} after:  {_balances(started.balances)}")
        print("\n" + render_receipt(started.receipt))

        notified = client.create(seed_request(with_notification=True))
        client.start(notified.id)
        mail = httpx.get(f"{server.url}/_sandbox/outbox").json()[-1]
        print(f"\nnotification to {mail['to']} ({mail['template_id']}):\n{mail['body']}")

        ok = started.balances == SEED_BALANCES_AFTER
        print(
            f"\nseed figures (cash 2200, bonus 810, balance 3010): {'MATCH' if ok else 'MISMATCH'}"
        )
        return 0 if ok else 1
