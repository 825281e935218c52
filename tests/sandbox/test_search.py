"""The list endpoint's search language: wildcards, ranges, AND/OR/NOT, groups, sort."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cardload.sandbox import GIFT_CARD, SEED_CARD
from tests.support import load_request

TX = "/api/v2/Smart/Transactions"


@pytest.fixture
def made(http: httpx.Client, auth: dict[str, str]) -> dict[str, str]:
    """merchantRef -> transaction id, created in this order."""
    refs = {"order-1": (SEED_CARD, 100), "order-12": (SEED_CARD, 200), "order-2": (GIFT_CARD, 300)}
    refs |= {"ord*r-3": (GIFT_CARD, 400), "a b": (GIFT_CARD, 500)}
    out = {}
    for ref, (card, cents) in refs.items():
        body = load_request(card, cents, merchantRef=ref)
        out[ref] = http.post(TX, json=body, headers=auth).json()["id"]
    return out


def ids(http: httpx.Client, auth: dict[str, str], **params: Any) -> list[str]:
    response = http.get(TX, params={"sort": "created:asc", **params}, headers=auth)
    assert response.status_code == 200, response.text
    return [tx["merchantRef"] for tx in response.json()["data"]]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("merchantRef:order-1", ["order-1"]),
        ("merchantRef:order-?", ["order-1", "order-2"]),
        ("merchantRef:order-*", ["order-1", "order-12", "order-2"]),
        # No escape for a wildcard, quoted or not: a key with * matches others too.
        ('merchantRef:"ord*r-3"', ["ord*r-3"]),
        ('merchantRef:"order-*"', ["order-1", "order-12", "order-2"]),
        ('merchantRef:"a b"', ["a b"]),
        ("basket_info.sum:[200 TO 400]", ["order-12", "order-2", "ord*r-3"]),
        ("basket_info.sum:[* TO 100]", ["order-1"]),
        ("merchantRef:order-* AND NOT merchantRef:order-1?", ["order-1", "order-2"]),
        ("merchantRef:order-1 OR merchantRef:order-2", ["order-1", "order-2"]),
        ("{merchantRef:order-1 OR merchantRef:a*} AND basket_info.sum:[400 TO *]", ["a b"]),
        (f"idents.value:{GIFT_CARD} AND NOT basket_info.sum:300", ["ord*r-3", "a b"]),
        ("status:created merchantRef:order-2", ["order-2"]),  # juxtaposed: AND
    ],
)
def test_queries(
    http: httpx.Client, auth: dict[str, str], made: dict[str, str], q: str, expected: list[str]
) -> None:
    assert ids(http, auth, q=q) == expected


def test_sort_and_the_default_order(
    http: httpx.Client, auth: dict[str, str], made: dict[str, str]
) -> None:
    everything = list(made)
    assert ids(http, auth) == everything
    assert ids(http, auth, sort="created:desc") == everything[::-1]
    assert ids(http, auth, sort="created:dsc") == everything[::-1]  # older SDK docs' word
    assert ids(http, auth, sort="basket_info.sum:desc")[:2] == ["a b", "ord*r-3"]
    # Undocumented default order: the sandbox does not hand out oldest first.
    response = http.get(TX, headers=auth).json()
    assert [tx["merchantRef"] for tx in response["data"]] == everything[::-1]


@pytest.mark.parametrize(
    ("q", "words"),
    [
        ("colour:red", "unknown property"),
        ("merchantRef:", "ends too early"),
        ("{merchantRef:a", "ends too early"),
        ("{merchantRef:a merchantRef:b", "ends too early"),
        ("basket_info.sum:[1 TO x]", "is not a number"),
        ("basket_info.sum:[1 TO]", "a range is [min TO max]"),
        ("merchantRef:a )", "cannot read"),
        ("basket_info.sum:[1 2]", "a range is [min TO max]"),
        ("merchantRef:a OR", "ends too early"),
    ],
)
def test_bad_queries_are_refused(
    http: httpx.Client, auth: dict[str, str], made: dict[str, str], q: str, words: str
) -> None:
    response = http.get(TX, params={"q": q}, headers=auth)
    assert response.status_code == 400 and words in response.json()["error_details"], response.text


def test_bad_sort_is_refused(http: httpx.Client, auth: dict[str, str]) -> None:
    response = http.get(TX, params={"sort": "created:sideways"}, headers=auth)
    assert response.status_code == 400 and "sort" in response.json()["error_details"]
