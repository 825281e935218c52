"""A job turned into the Smart Transaction that loads its card."""

from __future__ import annotations

from typing import Any

from jobs.model import CardLoadJob
from secuconnect.models import LOAD_EAN, CreateSmartTransaction


def build_create_request(
    job: CardLoadJob, *, contract_id: str, device_id: str
) -> CreateSmartTransaction:
    """The card in ``idents`` (or a card group to issue one), the load as a basket line
    with the reserved EAN, any extra lines before it, ``merchantRef`` = idempotency key."""
    products: list[dict[str, Any]] = [
        {
            "id": i,
            "desc": line.desc,
            "articleNumber": line.article_number,
            "ean": line.ean,
            "quantity": line.quantity,
            "priceOne": line.price_one_cents,
            "tax": line.tax,
        }
        for i, line in enumerate(job.extra_lines, start=1)
    ]
    products.append(
        {
            "id": len(products) + 1,
            "ean": LOAD_EAN,
            "articleNumber": None,
            "desc": job.article_description,
            "quantity": 1,
            "priceOne": job.amount_cents,
            "tax": 0,
        }
    )
    ident = (
        {"type": "card", "value": job.card_number}
        if job.card_number
        else {"type": "create_card", "value": job.card_group_id}
    )
    body: dict[str, Any] = {
        "contract": {"id": contract_id},
        "device_source": {"id": device_id},
        "intent": "sale",
        "idents": [ident],
        "basket": {"products": products},
        "basket_info": {"sum": job.total_cents, "currency": job.currency},
        "merchantRef": job.idempotency_key,
    }
    if job.customer_id:
        body["customer"] = {"id": job.customer_id}
    elif job.customer_contact:
        body["customer"] = {"contact": job.customer_contact.model_dump(exclude_none=True)}
    if job.template_id:
        body["communications"] = {"action_type": "charge", "template_id": job.template_id}
    return CreateSmartTransaction.model_validate(body)
