"""Start, cancel, bonus rules, card issue, notifications, listing and the admin API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cardload.sandbox import GIFT_CARD, NO_LOAD_BONUS_CARD, SEED_CARD, SandboxApp
from cardload.sandbox.world import BONUS_GROUP_ID, WHITELIST_CARD
from tests.support import load_request, seed

TX = "/api/v2/Smart/Transactions"


def _create(http: httpx.Client, auth: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = http.post(TX, json=body, headers=auth)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def _start(
    http: httpx.Client, auth: dict[str, str], tx_id: str, suffix: str = "/cash"
) -> httpx.Response:
    return http.post(f"{TX}/{tx_id}/start{suffix}", headers=auth)


def _card(http: httpx.Client, number: str) -> tuple[int, int, int]:
    card = http.get(f"/_sandbox/cards/{number}").json()
    return card["cash_balance"], card["bonus_balance"], card["balance"]


def test_double_start_is_refused_and_changes_nothing(
    http: httpx.Client, auth: dict[str, str]
) -> None:
    tx = _create(http, auth, seed("01-create-request.json"))
    assert _start(http, auth, tx["id"]).status_code == 200
    again = _start(http, auth, tx["id"])
    assert again.status_code == 400
    assert again.json()["error"] == "ProductNotAllowedException"
    assert "has status ok; only created can be started" in again.json()["error_details"]
    assert _card(http, SEED_CARD) == (2200, 810, 3010)
    assert len(http.get("/_sandbox/ledger").json()) == 1
    assert http.get(f"{TX}/{tx['id']}", headers=auth).json()["status"] == "ok"


def test_start_with_payment_method_and_unknown_ones(
    http: httpx.Client, auth: dict[str, str]
) -> None:
    tx = _create(http, auth, load_request(SEED_CARD, 1000))
    assert _start(http, auth, tx["id"], "/bitcoin").status_code == 400
    assert _start(http, auth, tx["id"], "/cash").status_code == 200
    assert _card(http, SEED_CARD) == (1200, 120, 1320)


def test_unknown_transaction_is_404(http: httpx.Client, auth: dict[str, str]) -> None:
    for response in (
        http.get(f"{TX}/STX_{'Z' * 30}", headers=auth),
        _start(http, auth, f"STX_{'Z' * 30}"),
    ):
        assert response.status_code == 404
        assert response.json()["error"] == "ProductNotFoundException"


def test_blacklisted_load_ean_earns_no_bonus(http: httpx.Client, auth: dict[str, str]) -> None:
    body = seed("01-create-request.json")
    body["idents"][0]["value"] = NO_LOAD_BONUS_CARD
    tx = _create(http, auth, body)
    done = _start(http, auth, tx["id"]).json()
    # 10 % on the 59 EUR article only; the 20 EUR load earns nothing.
    assert _card(http, NO_LOAD_BONUS_CARD) == (2000, 590, 2590)
    texts = [line["value"]["text"] for line in done["receipt"] if line["type"] == "textline"]
    assert texts[:4] == ["Umsatz erfasst:", "79,00 EUR", "Bonus:", "5,90 EUR"]


def test_whitelist_only_counts_listed_eans(http: httpx.Client, auth: dict[str, str]) -> None:
    body = load_request(WHITELIST_CARD, 2000)
    body["basket"]["products"].append(
        {"id": 2, "ean": "4006381333931", "desc": "Menü", "quantity": 2, "priceOne": 1000, "tax": 7}
    )
    body["basket_info"]["sum"] = 4000
    _start(http, auth, _create(http, auth, body)["id"])
    assert _card(http, WHITELIST_CARD) == (2000, 100, 2100)  # 5 % of 2 x 10 EUR


def test_gift_card_group_without_bonus(http: httpx.Client, auth: dict[str, str]) -> None:
    _start(http, auth, _create(http, auth, load_request(GIFT_CARD, 5000))["id"])
    assert _card(http, GIFT_CARD) == (5000, 0, 5000)


def test_bonus_is_rounded_down_to_whole_cents(http: httpx.Client, auth: dict[str, str]) -> None:
    _start(http, auth, _create(http, auth, load_request(SEED_CARD, 1999))["id"])
    assert _card(http, SEED_CARD) == (2199, 219, 2418)  # 199.9 -> 199 cents of bonus


def test_create_card_issues_a_new_card(http: httpx.Client, auth: dict[str, str]) -> None:
    body = load_request(SEED_CARD, 2500)
    body["idents"] = [{"type": "create_card", "value": BONUS_GROUP_ID}]
    tx = _create(http, auth, body)
    ident = tx["idents"][0]
    number = ident["value"]
    assert ident["type"] == "card" and len(number) == 16 and number.startswith("9276")
    assert number != SEED_CARD
    assert ident["merchantcard"]["card"]["cardnumber"] == number
    assert ident["merchantcard"]["cardgroup"]["id"] == BONUS_GROUP_ID
    assert (ident["merchantcard"]["cash_balance"], ident["merchantcard"]["balance"]) == (0, 0)
    _start(http, auth, tx["id"])
    assert _card(http, number) == (2500, 250, 2750)
    assert _card(http, SEED_CARD) == (200, 20, 220)


def test_notification_rendered_with_seed_placeholders(
    http: httpx.Client, auth: dict[str, str]
) -> None:
    tx = _create(http, auth, seed("04-create-request-with-notification.json"))
    assert http.get("/_sandbox/outbox").json() == []  # sent on start, not on create
    _start(http, auth, tx["id"])
    [mail] = http.get("/_sandbox/outbox").json()
    assert mail["to"] == "max123@example.org"
    assert mail["template_id"] == "ETP_6RYLPEWO8O2UPZV83C095P7IQ4GAL1"
    assert mail["placeholders"] == {
        "salutation": "Herr",
        "title": "Dr.",
        "forename": "Max",
        "surname": "Mustermann",
        "cardnumber": SEED_CARD,
        "amount": "20,00",
        "article_description": "Kartenaufladung 20 EUR",
    }
    assert "Herr Dr. Max Mustermann" in mail["body"] and "{{" not in mail["body"]
    assert tx["customer"]["id"].startswith("PCU_")  # created on the fly from the contact


def test_cancel_before_and_after_start(http: httpx.Client, auth: dict[str, str]) -> None:
    unstarted = _create(http, auth, load_request(SEED_CARD, 1000))
    assert http.post(f"{TX}/{unstarted['id']}/cancel", headers=auth).json()["status"] == "cancelled"
    assert _start(http, auth, unstarted["id"]).status_code == 400

    started = _create(http, auth, load_request(SEED_CARD, 1000))
    _start(http, auth, started["id"])
    assert _card(http, SEED_CARD) == (1200, 120, 1320)
    assert http.post(f"{TX}/{started['id']}/cancel", headers=auth).json()["status"] == "cancelled"
    assert _card(http, SEED_CARD) == (200, 20, 220)
    kinds = [(e["kind"], e["amount_cents"]) for e in http.get("/_sandbox/ledger").json()]
    assert kinds == [("load", 1000), ("reversal", -1000)]
    assert http.post(f"{TX}/{started['id']}/cancel", headers=auth).status_code == 400


def test_list_finds_by_merchant_ref(http: httpx.Client, auth: dict[str, str]) -> None:
    ids = [
        _create(http, auth, load_request(SEED_CARD, 100, merchantRef=ref))["id"]
        for ref in ("a", "b", "a b")
    ]
    _create(http, auth, load_request(SEED_CARD, 100))

    def q(query: str, **params: Any) -> dict[str, Any]:
        response = http.get(TX, params={"q": query, **params}, headers=auth)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    assert [tx["id"] for tx in q("merchantRef:a")["data"]] == [ids[0]]
    assert [tx["id"] for tx in q('merchantRef:"a b"')["data"]] == [ids[2]]
    assert q("merchantRef:zzz") == {"count": 0, "data": []}
    assert q("merchantRef:b AND status:created")["count"] == 1
    assert q("merchantRef:b AND status:ok")["count"] == 0
    everything = http.get(
        TX, params={"count": 2, "offset": 1, "sort": "created:desc"}, headers=auth
    ).json()
    assert everything["count"] == 4 and [tx["id"] for tx in everything["data"]] == [ids[2], ids[1]]
    bad = http.get(TX, params={"q": "colour:red"}, headers=auth)
    assert bad.status_code == 400 and "unknown property" in bad.json()["error_details"]


def test_admin_cards_reset_and_stats(
    app: SandboxApp, http: httpx.Client, auth: dict[str, str]
) -> None:
    issued = http.post("/_sandbox/cards", json={"count": 3, "cash_balance": 100}).json()[
        "cardnumbers"
    ]
    assert len(set(issued)) == 3
    _start(http, auth, _create(http, auth, load_request(issued[0], 900))["id"])
    assert _card(http, issued[0]) == (1000, 90, 1090)
    stats = http.get("/_sandbox/stats").json()
    assert stats["requests"] == {"token": 1, "create": 1, "start": 1}
    assert (stats["transactions"], stats["loads"]) == (1, 1)
    assert http.put("/_sandbox/config", json={"token_ttl_s": 5}).json()["token_ttl_s"] == 5
    http.post("/_sandbox/reset")
    assert http.get(f"/_sandbox/cards/{issued[0]}").status_code == 404
    assert http.get("/_sandbox/ledger").json() == []
    assert _card(http, SEED_CARD) == (200, 20, 220)
    assert http.get("/_sandbox/nothing").status_code == 404


@pytest.mark.parametrize("path", ["/api/v2/Smart/Transactions/x/start/cash/extra", "/api/v2/Other"])
def test_unknown_routes(http: httpx.Client, auth: dict[str, str], path: str) -> None:
    assert http.post(path, headers=auth).status_code == 404
