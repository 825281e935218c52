"""The sandbox's data: the seed document's merchant, contract, device, customer, card
and template, a few more cards for tests, and everything that changes (cards,
transactions, the ledger of loads, the outbox)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cardload.sandbox.ids import IdFactory

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(BERLIN)


MERCHANT_ID = "MRC_G8SE48FRHVITKILAPNCEDU0NUD55W8"
MERCHANT_NAME = "Secupay Test-Shop"
CONTRACT_ID = "GCR_9OIH9JOL8KIV5PFJBEOS2NN8TCM1DF"
DEVICE_ID = "SDV_WPX6NU09Q2NDF0KJD3H584EXJR3XA2"
STORE_ID = "STO_3522R8MS2MSHCN7D37UVJYR4P6C4PX"
CUSTOMER_ID = "PCU_H8ZQSFS9G2X07TF5JF89V55H645UA2"
TEMPLATE_ID = "ETP_6RYLPEWO8O2UPZV83C095P7IQ4GAL1"

BONUS_GROUP_ID = "CRG_GO7GQ6DHW3TJYGDF64WD16PUIDHQ8Y"
GIFT_GROUP_ID = "CRG_GIFT00000000000000000000000001"
NO_LOAD_BONUS_GROUP_ID = "CRG_BLACKLIST000000000000000000001"
WHITELIST_GROUP_ID = "CRG_WHITELIST000000000000000000001"

SEED_CARD = "9276004424644352"
LOCKED_CARD = "9276000000000001"
NO_LOAD_BONUS_CARD = "9276000000000002"
GIFT_CARD = "9276000000000003"
WHITELIST_CARD = "9276000000000004"

LOAD_EAN = "4260447149502"


@dataclass(frozen=True)
class CardGroup:
    id: str
    display_name: str
    bonus_bp: int  # bonus in basis points of the eligible basket: 1000 = 10 %
    ean_blacklist: frozenset[str] = frozenset()
    ean_whitelist: frozenset[str] | None = None  # None: every EAN not blacklisted earns
    picture: str | None = None
    stock_warn_limit: int = 0

    def earns_bonus(self, ean: str) -> bool:
        if ean in self.ean_blacklist:
            return False
        return self.ean_whitelist is None or ean in self.ean_whitelist


@dataclass
class Card:
    number: str
    card_id: str
    merchantcard_id: str
    group_id: str
    created: datetime
    cash_cents: int = 0
    bonus_cents: int = 0
    points: int = 0
    lock_status: str = "unlocked"
    stock_status: str = "active"
    passcode: int = 0
    is_base_card: bool = False
    last_usage: datetime | None = None
    last_charge: datetime | None = None
    expiry_date: datetime | None = None

    @property
    def balance_cents(self) -> int:
        return self.cash_cents + self.bonus_cents


@dataclass(frozen=True)
class Template:
    id: str
    subject: str
    body: str


@dataclass
class Transaction:
    id: str
    created: datetime
    contract_id: str
    device_id: str
    customer: dict[str, Any] | None
    intent: str
    idents: list[dict[str, str]]  # {"type": "card", "value": number}
    products: list[dict[str, Any]]  # normalised as the API echoes them
    basket_sum: int
    currency: str
    merchant_ref: str | None = None
    transaction_ref: str | None = None
    is_demo: bool | None = None
    communications: dict[str, Any] | None = None
    payment_context: dict[str, Any] | None = None
    status: str = "created"
    updated: datetime | None = None
    payment_method: str | None = None
    prepared_method: str | None = None  # chosen by /prepare, for a bare /start
    receipt: list[dict[str, Any]] = field(default_factory=list)
    load_cents: int = 0
    bonus_cents: int = 0
    completes_at: datetime | None = None  # while "processing": when it ends
    ends_as: str = "ok"  # how it ends (a paid status loads the card)

    @property
    def card_number(self) -> str | None:
        return next((i["value"] for i in self.idents if i["type"] == "card"), None)


@dataclass
class World:
    ids: IdFactory
    groups: dict[str, CardGroup]
    cards: dict[str, Card]
    customers: dict[str, dict[str, Any]]
    templates: dict[str, Template]
    transactions: dict[str, Transaction] = field(default_factory=dict)
    by_merchant_ref: dict[str, list[str]] = field(default_factory=dict)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)

    def issue_card(
        self, group_id: str, now: datetime, *, cash_cents: int = 0, bonus_cents: int = 0
    ) -> Card:
        number = self.ids.card_number()
        while number in self.cards:
            number = self.ids.card_number()
        card = Card(
            number=number,
            card_id=self.ids.object_id("CRD"),
            merchantcard_id=self.ids.object_id("MCD"),
            group_id=group_id,
            created=now,
            cash_cents=cash_cents,
            bonus_cents=bonus_cents,
        )
        self.cards[number] = card
        return card


_TEMPLATE_BODY = (
    "Guten Tag {{salutation}} {{title}} {{forename}} {{surname}},\n\n"
    "Ihre Karte {{cardnumber}} wurde mit {{amount}} EUR aufgeladen "
    "({{article_description}}).\n\nIhr Secupay Test-Shop"
)


def _test_card(number: str, group_id: str, **kw: Any) -> Card:
    serial = number[-2:]
    return Card(
        number=number,
        card_id=f"CRD_TESTCARD{serial:0>22}",
        merchantcard_id=f"MCD_TESTCARD{serial:0>22}",
        group_id=group_id,
        created=berlin("2020-01-01T10:00:00+01:00"),
        **kw,
    )


def seeded_world(seed: int = 0) -> World:
    """The seed document's world, plus cards for the cases the seed does not show."""
    groups = [
        CardGroup(
            BONUS_GROUP_ID,
            "Bonus",
            bonus_bp=1000,
            picture="https://connect.secucard.com/ds_g/8e79737df1e2513db48908b342c3cc436edf501a",
        ),
        CardGroup(GIFT_GROUP_ID, "Geschenkkarte", bonus_bp=0),
        CardGroup(
            NO_LOAD_BONUS_GROUP_ID,
            "Bonus ohne Aufladung",
            bonus_bp=1000,
            ean_blacklist=frozenset({LOAD_EAN}),
        ),
        CardGroup(
            WHITELIST_GROUP_ID,
            "Bonus Gastronomie",
            bonus_bp=500,
            ean_whitelist=frozenset({"4006381333931"}),
        ),
    ]
    seed_card = Card(
        number=SEED_CARD,
        card_id="CRD_22H4H5D47Q44URN2K8KTP876H6M3PM",
        merchantcard_id="MCD_2UXQJ84A62MENH7UWH6QXDYJSBNAA9",
        group_id=BONUS_GROUP_ID,
        created=berlin("2015-02-20T08:51:46+01:00"),
        cash_cents=200,
        bonus_cents=20,
        stock_status="inactive",
        passcode=1,
        last_usage=berlin("2017-10-11T09:34:42+02:00"),
        last_charge=berlin("2017-10-11T09:34:42+02:00"),
    )
    cards = [
        seed_card,
        _test_card(LOCKED_CARD, BONUS_GROUP_ID, cash_cents=500, lock_status="locked"),
        _test_card(NO_LOAD_BONUS_CARD, NO_LOAD_BONUS_GROUP_ID),
        _test_card(GIFT_CARD, GIFT_GROUP_ID),
        _test_card(WHITELIST_CARD, WHITELIST_GROUP_ID),
    ]
    customer = {
        "id": CUSTOMER_ID,
        "contact": {"forename": "Demond", "surname": "Mustermann", "name": "Demond Mustermann"},
    }
    template = Template(TEMPLATE_ID, "Ihre Karte wurde aufgeladen", _TEMPLATE_BODY)
    return World(
        ids=IdFactory(seed),
        groups={g.id: g for g in groups},
        cards={c.number: c for c in cards},
        customers={CUSTOMER_ID: customer},
        templates={TEMPLATE_ID: template},
    )
