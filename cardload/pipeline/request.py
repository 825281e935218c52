"""A job turned into the Smart Transaction that loads its card."""

from __future__ import annotations

from cardload.jobs.model import CardLoadJob
from cardload.secuconnect.models import (
    LOAD_EAN,
    Basket,
    BasketInfo,
    Communications,
    CreateSmartTransaction,
    CustomerRef,
    IdentRequest,
    Product,
    Ref,
    SmartTransaction,
)


def build_create_request(
    job: CardLoadJob, *, contract_id: str, device_id: str
) -> CreateSmartTransaction:
    """The card in ``idents`` (or a card group to issue one), the load as a basket line
    with the reserved EAN, any extra lines before it, ``merchantRef`` = idempotency key."""
    products = [
        Product(
            id=i,
            desc=line.desc,
            article_number=line.article_number,
            ean=line.ean,
            quantity=line.quantity,
            price_one=line.price_one_cents,
            tax=line.tax,
        )
        for i, line in enumerate(job.extra_lines, start=1)
    ]
    products.append(
        Product(
            id=len(products) + 1,
            ean=LOAD_EAN,
            desc=job.article_description,
            quantity=1,
            price_one=job.amount_cents,
            tax=0,
        )
    )
    ident = (
        IdentRequest(type="card", value=job.card_number)
        if job.card_number
        else IdentRequest(type="create_card", value=job.card_group_id or "")
    )
    customer = None
    if job.customer_id:
        customer = CustomerRef(id=job.customer_id)
    elif job.customer_contact:
        customer = CustomerRef(contact=job.customer_contact)
    return CreateSmartTransaction(
        contract=Ref(id=contract_id),
        device_source=Ref(id=device_id),
        intent="sale",
        idents=[ident],
        basket=Basket(products=products),
        basket_info=BasketInfo(sum=job.total_cents, currency=job.currency),
        merchant_ref=job.idempotency_key,
        customer=customer,
        communications=Communications(template_id=job.template_id) if job.template_id else None,
    )


def transaction_mismatch(job: CardLoadJob, tx: SmartTransaction) -> str | None:
    """Why ``tx`` is not the transaction :func:`build_create_request` made for ``job``
    (None if it is): the card, the load and the basket must be the job's. A transaction
    found by the job's merchantRef but for other content is someone else's load."""
    basket, info = tx.basket, tx.basket_info
    if basket is None or info is None:
        return "its basket is not shown"
    if basket.load_cents != job.amount_cents:
        return f"it loads {basket.load_cents} cents, the job {job.amount_cents}"
    if info.sum != job.total_cents or info.currency != job.currency:
        return f"its basket is {info.sum} {info.currency}, the job's {job.total_cents}"
    if job.card_number is not None and tx.card_number != job.card_number:
        return "it is for another card"
    group = tx.merchant_card.cardgroup if tx.merchant_card else None
    if job.card_group_id is not None and group is not None and group.id != job.card_group_id:
        return "it is for another card group"
    return None
