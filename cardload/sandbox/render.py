"""Sandbox state rendered as the API's JSON, field for field as in the seed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cardload.sandbox.world import (
    BERLIN,
    MERCHANT_ID,
    MERCHANT_NAME,
    STORE_ID,
    Card,
    Transaction,
    World,
)


def timestamp(value: datetime | None) -> str | None:
    return value.astimezone(BERLIN).isoformat(timespec="seconds") if value else None


def _ref(obj: str, id_: str) -> dict[str, str]:
    return {"object": obj, "id": id_}


def merchant_card(world: World, card: Card) -> dict[str, Any]:
    group = world.groups[card.group_id]
    return {
        "object": "loyalty.merchantcards",
        "id": card.merchantcard_id,
        "merchant": _ref("general.merchants", MERCHANT_ID),
        "created_for_merchant": _ref("general.merchants", MERCHANT_ID),
        "card": {
            "object": "loyalty.cards",
            "id": card.card_id,
            "cardnumber": card.number,
            "created": timestamp(card.created),
        },
        "cardgroup": {
            "object": "loyalty.cardgroups",
            "id": group.id,
            "display_name": group.display_name,
            "display_name_raw": group.display_name,
            "stock_warn_limit": group.stock_warn_limit,
            "picture": group.picture,
        },
        "created_for_store": _ref("general.stores", STORE_ID),
        "is_base_card": card.is_base_card,
        "points": card.points,
        "cash_balance": card.cash_cents,
        "bonus_balance": card.bonus_cents,
        "balance": card.balance_cents,
        "last_usage": timestamp(card.last_usage),
        "last_charge": timestamp(card.last_charge),
        "stock_status": card.stock_status,
        "lock_status": card.lock_status,
        "passcode": card.passcode,
        "expiry_date": timestamp(card.expiry_date),
    }


def _ident(world: World, index: int, ident: dict[str, str]) -> dict[str, Any]:
    card = world.cards[ident["value"]]
    return {
        "object": "smart.idents",
        "id": f"smi_{index}",
        "prefix": card.number[:4],
        "name": "secucard Kundenkarte",
        "type": "card",
        "value": card.number,
        "valid": True,
        "merchantcard": merchant_card(world, card),
    }


def _customer(customer: dict[str, Any]) -> dict[str, Any]:
    return {"object": "payment.customers", "id": customer["id"], "contact": customer["contact"]}


def transaction(world: World, tx: Transaction) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object": "smart.transactions",
        "id": tx.id,
        "merchant": {
            "object": "general.merchants",
            "id": MERCHANT_ID,
            "companyname": MERCHANT_NAME,
        },
        "contract": _ref("general.contracts", tx.contract_id),
    }
    if tx.customer:
        body["customer"] = _customer(tx.customer)
    body |= {
        "device_source": _ref("smart.devices", tx.device_id),
        "transactions": [],
        "created": timestamp(tx.created),
    }
    if tx.updated:
        body["updated"] = timestamp(tx.updated)
    body |= {
        "status": tx.status,
        "transactionRef": tx.transaction_ref,
        "merchantRef": tx.merchant_ref,
        "intent": tx.intent,
        "basket": {"products": tx.products, "type": "default", "texts": []},
        "basket_info": {"sum": tx.basket_sum, "gratuity": None, "currency": tx.currency},
        "idents": [_ident(world, i, ident) for i, ident in enumerate(tx.idents, start=1)],
    }
    if tx.receipt:
        body["receipt"] = tx.receipt
    if tx.communications:
        body["communications"] = tx.communications
    if tx.payment_context:
        body["payment_context"] = tx.payment_context
    if tx.is_demo is not None:
        body["is_demo"] = tx.is_demo
    return body
