"""Wire models of the secuconnect Smart Transactions API (pydantic v2).

Tolerant where the API may grow (unknown fields are kept, unknown status strings
parse), strict where we act on a value: amounts are JSON integers in cents, never
floats or strings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from cardload.observability.masking import mask_text
from cardload.secuconnect.receipt import ReceiptLine

LOAD_EAN = "4260447149502"
"""The EAN/GTIN secupay reserved for the basket line that loads a card."""

Cents = Annotated[int, Field(strict=True)]
PositiveCents = Annotated[int, Field(strict=True, gt=0)]


class WireModel(BaseModel):
    """Base of every API model: camelCase aliases accepted and emitted, extras kept. A
    validation error never quotes the values it refused (card numbers, tokens)."""

    model_config = ConfigDict(
        extra="allow",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        hide_input_in_errors=True,
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Ref(WireModel):
    """A reference to another object: ``{"object": ..., "id": ...}``."""

    object: str | None = None
    id: str


# --- create request -----------------------------------------------------------


class Address(WireModel):
    street: str | None = None
    street_number: str | None = None
    postal_code: str | None = None
    city: str | None = None
    country: str | None = None


class Contact(WireModel):
    salutation: str | None = None
    title: str | None = None
    forename: str | None = None
    surname: str | None = None
    name: str | None = None
    email: str | None = None
    address: Address | None = None


class CustomerRef(WireModel):
    """The customer by id (``PCU_...``) or created on the fly from a contact."""

    object: str | None = None
    id: str | None = None
    contact: Contact | None = None

    @model_validator(mode="after")
    def _id_or_contact(self) -> CustomerRef:
        if self.id is None and self.contact is None:
            raise ValueError("customer needs an id or a contact")
        return self


class IdentRequest(WireModel):
    """``card`` with a card number, or ``create_card`` with a card group id (``CRG_...``)."""

    type: Literal["card", "create_card"]
    value: str


class Product(WireModel):
    id: int
    parent: int | None = None
    item_type: str | None = None
    desc: str
    article_number: int | str | None = Field(default=None, alias="articleNumber")
    ean: str | None = None
    quantity: Annotated[int, Field(strict=True, gt=0)]
    price_one: PositiveCents = Field(alias="priceOne")
    tax: Annotated[int, Field(strict=True, ge=0, le=100)]
    reference_id: str | None = None
    group: list[Any] | None = None

    @property
    def total_cents(self) -> int:
        return self.quantity * self.price_one

    @property
    def is_load(self) -> bool:
        return self.ean == LOAD_EAN


class Basket(WireModel):
    products: Annotated[list[Product], Field(min_length=1)]
    type: str | None = None
    texts: list[Any] | None = None

    @property
    def total_cents(self) -> int:
        return sum(product.total_cents for product in self.products)

    @property
    def load_cents(self) -> int:
        return sum(product.total_cents for product in self.products if product.is_load)


class BasketInfo(WireModel):
    sum: PositiveCents
    gratuity: Cents | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class Communications(WireModel):
    action_type: Literal["charge"] = "charge"
    template_id: Annotated[str, Field(pattern=r"^ETP_[A-Z0-9]{30}$")]


class PaymentContext(WireModel):
    auto_capture: bool | None = None


class CreateSmartTransaction(WireModel):
    """Body of ``POST /api/v2/Smart/Transactions``."""

    is_demo: bool | None = None
    contract: Ref
    device_source: Ref
    customer: CustomerRef | None = None
    intent: Literal["sale", "order"] = "sale"
    idents: list[IdentRequest] = Field(default_factory=list)
    basket: Basket
    basket_info: BasketInfo
    merchant_ref: str | None = Field(default=None, alias="merchantRef", max_length=255)
    transaction_ref: str | None = Field(default=None, alias="transactionRef", max_length=255)
    communications: Communications | None = None
    payment_context: PaymentContext | None = None

    @model_validator(mode="after")
    def _sum_matches_basket(self) -> CreateSmartTransaction:
        if self.basket_info.sum != self.basket.total_cents:
            raise ValueError(
                f"basket_info.sum {self.basket_info.sum} != basket total {self.basket.total_cents}"
            )
        return self


# --- Smart Transaction response ---------------------------------------------


class Card(WireModel):
    object: str | None = None
    id: str | None = None
    cardnumber: str | None = None
    created: datetime | None = None


class CardGroup(WireModel):
    object: str | None = None
    id: str | None = None
    display_name: str | None = None


class Balances(BaseModel):
    """A card's balances in cents: loaded cash, earned bonus, and their total."""

    model_config = ConfigDict(frozen=True)

    cash_cents: Cents
    bonus_cents: Cents
    total_cents: Cents


class MerchantCard(WireModel):
    object: str | None = None
    id: str | None = None
    card: Card | None = None
    cardgroup: CardGroup | None = None
    is_base_card: bool | None = None
    points: int | None = None
    cash_balance: Cents | None = None
    bonus_balance: Cents | None = None
    balance: Cents | None = None
    last_usage: datetime | None = None
    last_charge: datetime | None = None
    stock_status: str | None = None
    lock_status: str | None = None
    passcode: int | None = None
    expiry_date: datetime | None = None

    def balances(self) -> Balances | None:
        if self.cash_balance is None or self.bonus_balance is None or self.balance is None:
            return None
        return Balances(
            cash_cents=self.cash_balance,
            bonus_cents=self.bonus_balance,
            total_cents=self.balance,
        )


class Ident(WireModel):
    object: str | None = None
    id: str | None = None
    prefix: str | None = None
    name: str | None = None
    type: str | None = None
    value: str | None = None
    valid: bool | None = None
    merchantcard: MerchantCard | None = None


class Merchant(Ref):
    companyname: str | None = None


class Customer(WireModel):
    object: str | None = None
    id: str | None = None
    contact: Contact | None = None


class SmartTransaction(WireModel):
    """A Smart Transaction as the API returns it (create, read, start, cancel)."""

    object: str | None = None
    id: Annotated[str, Field(pattern=r"^STX_[A-Z0-9]{30}$")]
    status: str
    created: datetime | None = None
    updated: datetime | None = None
    merchant: Merchant | None = None
    contract: Ref | None = None
    customer: Customer | None = None
    device_source: Ref | None = None
    transactions: list[Any] | None = None
    intent: str | None = None
    basket: Basket | None = None
    basket_info: BasketInfo | None = None
    idents: list[Ident] = Field(default_factory=list)
    merchant_ref: str | None = Field(default=None, alias="merchantRef")
    transaction_ref: str | None = Field(default=None, alias="transactionRef")
    receipt: list[ReceiptLine] = Field(default_factory=list)
    communications: Communications | None = None
    is_demo: bool | None = None

    @property
    def merchant_card(self) -> MerchantCard | None:
        """The first ident's merchant card (a load transaction carries exactly one)."""
        return next((i.merchantcard for i in self.idents if i.merchantcard), None)

    @property
    def card_number(self) -> str | None:
        card = self.merchant_card.card if self.merchant_card else None
        if card and card.cardnumber:
            return card.cardnumber
        return next((i.value for i in self.idents if i.type == "card"), None)

    @property
    def balances(self) -> Balances | None:
        return self.merchant_card.balances() if self.merchant_card else None


class SmartTransactionList(WireModel):
    """``GET /api/v2/Smart/Transactions``: total count and one page of data."""

    count: int
    data: list[SmartTransaction] = Field(default_factory=list)


# --- errors and OAuth -----------------------------------------------------------


# The API's own texts may quote the card ("card 9276… is locked"): masked on arrival, so
# no error, dead letter, event, report or log line downstream ever holds the number.
MaskedText = Annotated[str, AfterValidator(mask_text)]


class ApiErrorBody(WireModel):
    """The API's error body; ``code`` is a number in the docs, a string in the PHP SDK."""

    status: str = "error"
    error: str
    error_details: MaskedText | None = None
    error_user: MaskedText | None = None
    code: int | str | None = None
    support_id: str | None = Field(default=None, alias="supportId")


class OAuthToken(WireModel):
    access_token: SecretStr
    expires_in: Annotated[int, Field(gt=0)]
    token_type: str = "bearer"
    scope: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = super().to_wire()
        wire["access_token"] = self.access_token.get_secret_value()
        return wire


class OAuthErrorBody(WireModel):
    error: str
    error_description: MaskedText | None = None
