from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from cardload.secuconnect import (
    ApiErrorBody,
    Balances,
    CreateSmartTransaction,
    SmartTransaction,
    TransactionStatus,
)
from cardload.secuconnect.models import OAuthToken
from cardload.secuconnect.receipt import (
    RECEIPT_LINES,
    NameValueLine,
    OtherLine,
    SeparatorLine,
    SpaceLine,
    TextLine,
)
from tests.support import SEED_DIR, SHARED_SEED_DIR, seed


@pytest.mark.parametrize("name", sorted(p.name for p in SEED_DIR.glob("*.json")))
def test_every_seed_json_parses(name: str) -> None:
    data = seed(name)
    model = CreateSmartTransaction if "request" in name else SmartTransaction
    parsed = model.model_validate(data)
    # Nothing lost or changed on the way through the models (unknown fields included).
    assert parsed.model_dump(mode="json", by_alias=True, exclude_unset=True) == data


def test_repo_copy_of_seed_matches_shared() -> None:
    """The fixtures are a copy of ../shared/seed; catch drift where that folder exists
    (CI lays it beside the clone; a clone on its own has only the copy)."""
    if not SHARED_SEED_DIR.is_dir():
        pytest.skip(f"{SHARED_SEED_DIR} not present beside this clone")
    shared = sorted(p.name for p in SHARED_SEED_DIR.glob("*.json"))
    assert shared == sorted(p.name for p in SEED_DIR.glob("*.json"))
    for name in shared:
        assert json.loads((SHARED_SEED_DIR / name).read_text()) == seed(name), name


def test_create_response_has_balances_before_the_load() -> None:
    tx = SmartTransaction.model_validate(seed("02-create-response.json"))
    assert tx.status == TransactionStatus.CREATED
    assert tx.balances == Balances(cash_cents=200, bonus_cents=20, total_cents=220)
    assert tx.card_number == "9276004424644352"
    assert tx.basket is not None
    assert (tx.basket.total_cents, tx.basket.load_cents) == (7900, 2000)


def test_start_response_has_balances_and_receipt() -> None:
    tx = SmartTransaction.model_validate(seed("03-start-response-excerpt.json"))
    assert tx.status == TransactionStatus.OK
    assert tx.balances == Balances(cash_cents=2200, bonus_cents=810, total_cents=3010)
    kinds = [type(line) for line in tx.receipt]
    assert kinds.count(SeparatorLine) == 2
    assert kinds.count(NameValueLine) == 4
    assert kinds.count(SpaceLine) == 5
    assert kinds.count(TextLine) == 11
    texts = [line.value.text for line in tx.receipt if isinstance(line, TextLine)]
    assert texts[-1] == "30,10 EUR"


def test_request_with_notification() -> None:
    req = CreateSmartTransaction.model_validate(seed("04-create-request-with-notification.json"))
    assert req.communications is not None
    assert req.communications.template_id == "ETP_6RYLPEWO8O2UPZV83C095P7IQ4GAL1"
    assert req.customer is not None and req.customer.contact is not None
    assert req.customer.contact.email == "max123@example.org"


def test_unknown_fields_and_statuses_are_tolerated() -> None:
    data = seed("02-create-response.json") | {
        "status": "authorized_partially",
        "brand_new": {"x": 1},
    }
    data["receipt"] = [{"type": "barcode", "value": {"code": "123"}}]
    tx = SmartTransaction.model_validate(data)
    assert tx.status == "authorized_partially"
    assert tx.model_extra == {"brand_new": {"x": 1}}
    assert isinstance(tx.receipt[0], OtherLine)


@pytest.mark.parametrize("amount", [2000.0, "2000", True])
def test_amounts_must_be_json_integers(amount: Any) -> None:
    data = seed("01-create-request.json")
    data["basket"]["products"][1]["priceOne"] = amount
    with pytest.raises(ValidationError):
        CreateSmartTransaction.model_validate(data)


def test_response_balances_must_be_integers() -> None:
    data = seed("03-start-response-excerpt.json")
    data["idents"][0]["merchantcard"]["cash_balance"] = 22.0
    with pytest.raises(ValidationError):
        SmartTransaction.model_validate(data)


def test_sum_must_equal_basket_total() -> None:
    data = seed("01-create-request.json")
    data["basket_info"]["sum"] = 7901
    with pytest.raises(
        ValidationError, match=re.escape("basket_info.sum 7901 != basket total 7900")
    ):
        CreateSmartTransaction.model_validate(data)


def test_customer_needs_id_or_contact() -> None:
    data = seed("01-create-request.json") | {"customer": {}}
    with pytest.raises(ValidationError, match="id or a contact"):
        CreateSmartTransaction.model_validate(data)


@pytest.mark.parametrize("code", [2003, "2003"])
def test_api_error_code_number_or_string(code: Any) -> None:
    body = ApiErrorBody.model_validate(
        {
            "status": "error",
            "error": "ProductNotAllowedException",
            "error_details": "Valid auth token required",
            "error_user": "x",
            "code": code,
            "supportId": "abc",
        }
    )
    assert body.support_id == "abc"
    assert str(body.code) == "2003"


def test_token_is_secret_in_repr() -> None:
    token = OAuthToken.model_validate(
        {"access_token": "qb56tjj1bcvo9n2nj4u38k84lo", "expires_in": 1200}
    )
    assert "qb56" not in repr(token)
    assert token.to_wire()["access_token"] == "qb56tjj1bcvo9n2nj4u38k84lo"


def test_a_receipt_dumped_whole_is_each_line_dumped() -> None:
    """``RECEIPT_LINES`` dumps (and parses) a receipt in one call: the same lines, every
    kind, unknown kinds and extra fields kept, None left out, as one dump per line."""
    data = seed("03-start-response-excerpt.json")
    data["receipt"] += [
        {"type": "barcode", "value": {"code": "9276004424644352", "n": None}},
        {"type": "textline", "value": {"text": "x", "decoration": ["important"]}, "extra": 1},
        {"type": "separator", "value": {}},
        {"type": "space", "note": None},
    ]
    lines = SmartTransaction.model_validate(data).receipt
    whole = RECEIPT_LINES.dump_python(lines, mode="json", exclude_none=True)
    assert whole == [line.model_dump(mode="json", exclude_none=True) for line in lines]
    assert whole[-4] == {"type": "barcode", "value": {"code": "9276004424644352", "n": None}}
    again = RECEIPT_LINES.validate_python(whole)  # as receipt_of reads stored lines
    assert RECEIPT_LINES.dump_python(again, mode="json", exclude_none=True) == whole
