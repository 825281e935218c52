"""Validation of a create request, as a payment API would do it: every problem is an
``ApiFailure`` naming the field. Amounts must be JSON integers; ``2000.0`` is refused."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cardload.sandbox.failures import invalid, not_allowed
from cardload.sandbox.world import CONTRACT_ID, DEVICE_ID, LOAD_EAN, World

CURRENCIES = frozenset({"EUR"})
CARD_NUMBER = re.compile(r"^\d{16}$")
_MAX_REF = 255


@dataclass
class ValidCreate:
    body: dict[str, Any]
    customer: dict[str, Any] | None
    idents: list[dict[str, str]]  # "card" idents; create_card still carries a group id
    products: list[dict[str, Any]]
    basket_sum: int
    currency: str


def _object(body: dict[str, Any], key: str, *, required: bool = True) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, dict):
        raise invalid(f"{key}: object required")
    return value


def _int(value: Any, where: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{where}: integer required")
    if minimum is not None and value < minimum:
        raise invalid(f"{where}: must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise invalid(f"{where}: must be at most {maximum}")
    return value


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or len(value) > _MAX_REF):
        raise invalid(f"{key}: string of at most {_MAX_REF} characters required")
    return value


def _reference(body: dict[str, Any], key: str, known: str) -> None:
    ref = _object(body, key)
    assert ref is not None
    if ref.get("id") != known:
        raise invalid(f"{key}.id: unknown {key} {ref.get('id')!r}")


def _customer(world: World, body: dict[str, Any]) -> dict[str, Any] | None:
    customer = _object(body, "customer", required=False)
    if customer is None:
        return None
    if "id" in customer:
        known = world.customers.get(str(customer["id"]))
        if known is None:
            raise invalid(f"customer.id: unknown customer {customer['id']!r}")
        return known
    contact = customer.get("contact")
    if not isinstance(contact, dict):
        raise invalid("customer: id or contact required")
    email = contact.get("email")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        raise invalid("customer.contact.email: not an email address")
    return {"id": None, "contact": dict(contact)}


def _idents(world: World, body: dict[str, Any]) -> list[dict[str, str]]:
    raw = body.get("idents", [])
    if not isinstance(raw, list) or len(raw) > 1:
        raise invalid("idents: a list with at most one ident required")
    idents = []
    for i, ident in enumerate(raw):
        kind, value = (
            (ident.get("type"), ident.get("value")) if isinstance(ident, dict) else (None, None)
        )
        if kind == "card":
            if not isinstance(value, str) or not CARD_NUMBER.match(value):
                raise invalid(f"idents[{i}].value: card number of 16 digits required")
            card = world.cards.get(value)
            if card is None:
                raise invalid(f"idents[{i}].value: unknown card")
            if card.lock_status != "unlocked":
                # As a real API may: the error text quotes the card number.
                raise not_allowed(f"idents[{i}].value: card {card.number} is locked")
        elif kind == "create_card":
            if value not in world.groups:
                raise invalid(f"idents[{i}].value: unknown card group {value!r}")
        else:
            raise invalid(f"idents[{i}].type: 'card' or 'create_card' required")
        idents.append({"type": kind, "value": value})
    return idents


def _product(raw: Any, i: int) -> dict[str, Any]:
    where = f"basket.products[{i}]"
    if not isinstance(raw, dict):
        raise invalid(f"{where}: object required")
    desc = raw.get("desc")
    if not isinstance(desc, str) or not desc:
        raise invalid(f"{where}.desc: text required")
    ean = raw.get("ean") or ""
    if not isinstance(ean, str) or (ean and not ean.isdigit()):
        raise invalid(f"{where}.ean: digits required")
    article = raw.get("articleNumber")
    if article is not None and (isinstance(article, bool) or not isinstance(article, int | str)):
        raise invalid(f"{where}.articleNumber: text or number required")
    return {
        "id": _int(raw.get("id"), f"{where}.id", minimum=0),
        "parent": raw.get("parent"),
        "item_type": raw.get("item_type") or "article",
        "desc": desc,
        "articleNumber": "" if article is None else str(article),
        "ean": ean,
        "quantity": _int(raw.get("quantity"), f"{where}.quantity", minimum=1),
        "priceOne": _int(raw.get("priceOne"), f"{where}.priceOne", minimum=1),
        "tax": _int(raw.get("tax", 0), f"{where}.tax", minimum=0, maximum=100),
        "reference_id": raw.get("reference_id"),
        "group": raw.get("group") or [],
    }


def _basket(body: dict[str, Any]) -> tuple[list[dict[str, Any]], int, str]:
    basket = _object(body, "basket")
    assert basket is not None
    raw_products = basket.get("products")
    if not isinstance(raw_products, list) or not raw_products:
        raise invalid("basket.products: at least one product required")
    products = [_product(raw, i) for i, raw in enumerate(raw_products)]
    info = _object(body, "basket_info")
    assert info is not None
    total = _int(info.get("sum"), "basket_info.sum", minimum=1)
    expected = sum(p["quantity"] * p["priceOne"] for p in products)
    if total != expected:
        raise invalid(f"basket_info.sum: {total} does not equal the basket total {expected}")
    currency = info.get("currency")
    if currency not in CURRENCIES:
        raise invalid(f"basket_info.currency: {currency!r} not supported (EUR)")
    return products, total, currency


def _communications(world: World, body: dict[str, Any], customer: dict[str, Any] | None) -> None:
    comms = _object(body, "communications", required=False)
    if comms is None:
        return
    if comms.get("action_type") != "charge":
        raise invalid("communications.action_type: must be 'charge'")
    if comms.get("template_id") not in world.templates:
        raise invalid(f"communications.template_id: unknown template {comms.get('template_id')!r}")
    if not (customer and (customer.get("contact") or {}).get("email")):
        raise invalid("customer.contact.email: required to send communications")


def validate_create(world: World, body: Any) -> ValidCreate:
    if not isinstance(body, dict):
        raise invalid("body: JSON object required")
    _reference(body, "contract", CONTRACT_ID)
    _reference(body, "device_source", DEVICE_ID)
    if body.get("intent", "sale") not in ("sale", "order"):
        raise invalid("intent: 'sale' or 'order' required")
    if "is_demo" in body and not isinstance(body["is_demo"], bool):
        raise invalid("is_demo: boolean required")
    _optional_str(body, "merchantRef")
    _optional_str(body, "transactionRef")
    customer = _customer(world, body)
    idents = _idents(world, body)
    products, total, currency = _basket(body)
    if any(p["ean"] == LOAD_EAN for p in products) and not idents:
        raise invalid(f"idents: a card is required to load (basket has EAN {LOAD_EAN})")
    _communications(world, body, customer)
    return ValidCreate(body, customer, idents, products, total, currency)
