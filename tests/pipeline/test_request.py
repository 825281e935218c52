"""The create request a job becomes, against the seed's own request."""

from __future__ import annotations

from cardload.jobs import CardLoadJob, ExtraLine
from cardload.pipeline.request import build_create_request, transaction_mismatch
from cardload.sandbox import CONTRACT_ID, DEVICE_ID, GIFT_CARD, SEED_CARD
from cardload.secuconnect import SmartTransaction
from tests.support import seed

SEED_JOB = CardLoadJob(
    idempotency_key="order-4711",
    card_number=SEED_CARD,
    amount_cents=2000,
    description="Kartenaufladung 20 EUR",
    customer_id="PCU_H8ZQSFS9G2X07TF5JF89V55H645UA2",
    extra_lines=(
        ExtraLine(
            desc="Dining service Puslnitz, 26 pieces",
            price_one_cents=5900,
            tax=19,
            article_number="30200",
        ),
    ),
)


def test_the_seed_job_becomes_the_seed_request() -> None:
    wire = build_create_request(SEED_JOB, contract_id=CONTRACT_ID, device_id=DEVICE_ID).to_wire()
    expected = seed("01-create-request.json")
    del expected["is_demo"]  # a demo flag, not ours to send
    for product in expected["basket"]["products"]:
        product["articleNumber"] = product["articleNumber"] and str(product["articleNumber"])
        if product["articleNumber"] is None:
            del product["articleNumber"]  # null fields are left out
    assert wire == expected | {"merchantRef": "order-4711"}


def test_a_transaction_is_the_job_s_own_only_for_its_card_and_load() -> None:
    request = build_create_request(SEED_JOB, contract_id=CONTRACT_ID, device_id=DEVICE_ID)
    tx = SmartTransaction.model_validate(
        request.to_wire() | {"id": "STX_" + "A" * 30, "status": "created"}
    )
    assert transaction_mismatch(SEED_JOB, tx) is None
    other_card = SEED_JOB.model_copy(update={"card_number": GIFT_CARD})
    assert transaction_mismatch(other_card, tx) == "it is for another card"
    more = SEED_JOB.model_copy(update={"amount_cents": 2100})
    assert transaction_mismatch(more, tx) == "it loads 2000 cents, the job 2100"
    bare = SmartTransaction.model_validate({"id": "STX_" + "A" * 30, "status": "ok"})
    assert transaction_mismatch(SEED_JOB, bare) == "its basket is not shown"
