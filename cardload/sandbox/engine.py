"""What the Smart Transactions endpoints do to the sandbox's world.

Callers hold the app's lock, so each operation is atomic: a start either loads the
card and sets ``ok`` or changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cardload.sandbox import search
from cardload.sandbox.failures import invalid, not_allowed, not_found
from cardload.sandbox.receipt import Booking, build_receipt
from cardload.sandbox.render import timestamp
from cardload.sandbox.validation import validate_create
from cardload.sandbox.world import LOAD_EAN, Card, Transaction, World
from cardload.secuconnect.methods import PREPARE_METHODS, START_METHODS
from cardload.secuconnect.money import format_amount_de
from cardload.secuconnect.statuses import is_paid

MAX_PAGE = 100
# The API does not document its default order: the sandbox picks the one a client that
# relies on "oldest first" gets wrong.
DEFAULT_SORT = "created:desc"
_SALUTATIONS = {
    "mr.": "Herr",
    "mr": "Herr",
    "mrs.": "Frau",
    "ms.": "Frau",
    "mrs": "Frau",
    "ms": "Frau",
}


@dataclass(frozen=True)
class Payment:
    """How a start goes (fault injection): answered ``processing`` for ``processing_s``
    first, if more than 0, then ending in ``ends_as`` (a paid status loads the card; a
    failed one does not)."""

    processing_s: float = 0.0
    ends_as: str = "ok"


class Engine:
    """:param bare_start: take a ``/start`` without a method and no ``/prepare`` before
    it, as the seed shows (its payment was "carried out" elsewhere before); the API
    wants a method unless a prepare chose one."""

    def __init__(
        self, world: World, clock: Callable[[], datetime], *, bare_start: bool = False
    ) -> None:
        self.world = world
        self._clock = clock
        self._processing: list[Transaction] = []
        self.bare_start = bare_start

    def settle(self) -> None:
        """Complete every start whose processing time is over (called before each
        request, so what a client reads is what the time says)."""
        if not self._processing:
            return
        now = self._clock()
        due = [tx for tx in self._processing if tx.completes_at and tx.completes_at <= now]
        for tx in due:
            self._processing.remove(tx)
            self._complete(tx, tx.completes_at or now)

    def create(self, body: Any) -> Transaction:
        valid = validate_create(self.world, body)
        now = self._clock()
        idents = [
            {"type": "card", "value": self.world.issue_card(i["value"], now).number}
            if i["type"] == "create_card"
            else i
            for i in valid.idents
        ]
        customer = valid.customer
        if customer is not None and customer["id"] is None:
            customer = self._customer_on_the_fly(customer["contact"])
        tx = Transaction(
            id=self.world.ids.object_id("STX"),
            created=now,
            contract_id=body["contract"]["id"],
            device_id=body["device_source"]["id"],
            customer=customer,
            intent=body.get("intent", "sale"),
            idents=idents,
            products=valid.products,
            basket_sum=valid.basket_sum,
            currency=valid.currency,
            merchant_ref=body.get("merchantRef"),
            transaction_ref=body.get("transactionRef"),
            is_demo=body.get("is_demo"),
            communications=body.get("communications"),
            payment_context=body.get("payment_context"),
        )
        self.world.transactions[tx.id] = tx
        if tx.merchant_ref is not None:
            self.world.by_merchant_ref.setdefault(tx.merchant_ref, []).append(tx.id)
        return tx

    def get(self, tx_id: str) -> Transaction:
        tx = self.world.transactions.get(tx_id)
        if tx is None:
            raise not_found(f"Smart transaction {tx_id} not found")
        return tx

    def list(
        self, q: str | None, count: int, offset: int, sort: str | None
    ) -> tuple[int, list[Transaction]]:
        """One page of the transactions ``q`` matches, in ``sort`` order, and how many
        match in all (see :mod:`sandbox.search` for the language)."""
        node = search.parse(q) if q else None
        refs = search.exact_merchant_refs(node) if node else None
        if refs is not None:  # the index keeps a lookup by merchantRef cheap at any size
            index = self.world.by_merchant_ref
            ids = dict.fromkeys(i for ref in refs for i in index.get(ref, []))
            candidates = [self.world.transactions[i] for i in ids]
        else:
            candidates = list(self.world.transactions.values())
        hits = search.ordered(
            [tx for tx in candidates if node is None or node.matches(tx)], sort or DEFAULT_SORT
        )
        return len(hits), hits[offset : offset + min(count, MAX_PAGE)]

    def prepare(self, tx_id: str, payment_method: str) -> Transaction:
        """Authorise: the method is kept for the start, which may then be bare. The
        customer's part (a payment page, a mandate) is outside the sandbox: the
        transaction stays ``created``."""
        tx = self._startable(tx_id, "prepared")
        if payment_method not in PREPARE_METHODS:
            known = ", ".join(sorted(PREPARE_METHODS))
            raise invalid(f"payment method {payment_method!r} cannot be prepared ({known})")
        tx.prepared_method, tx.updated = payment_method, self._clock()
        return tx

    def start(
        self,
        tx_id: str,
        payment_method: str | None,
        payment: Payment | None = None,
        body: Any = None,
    ) -> Transaction:
        """Pay: load the card and set ``ok`` (or as ``payment`` says)."""
        payment = payment or Payment()
        tx = self._startable(tx_id, "started")
        method = self._start_method(tx, payment_method or None, body)
        card = self.world.cards.get(tx.card_number) if tx.card_number else None
        if card is not None and card.lock_status != "unlocked":
            raise not_allowed(f"card {card.number} is locked")
        now = self._clock()
        tx.updated, tx.payment_method = now, method
        if payment.processing_s > 0:
            tx.status = "processing"
            tx.completes_at = now + timedelta(seconds=payment.processing_s)
            tx.ends_as = payment.ends_as
            self._processing.append(tx)
            return tx
        self._complete(tx, now, payment.ends_as)
        return tx

    def _startable(self, tx_id: str, done: str) -> Transaction:
        tx = self.get(tx_id)
        if tx.status != "created":
            raise not_allowed(
                f"Smart transaction {tx_id} has status {tx.status}; only created can be {done}"
            )
        return tx

    def _start_method(self, tx: Transaction, method: str | None, body: Any) -> str | None:
        """The method a start pays with, or why the API would refuse it."""
        if tx.prepared_method is not None:
            if method not in (None, tx.prepared_method):
                raise invalid(f"prepared for {tx.prepared_method}, started with {method}")
            return tx.prepared_method
        if method is None:
            if self.bare_start:
                return None
            raise invalid(
                "payment method required: POST .../start/{method} with one of "
                f"{', '.join(sorted(START_METHODS))}, or POST .../prepare/{{method}} first"
            )
        if method not in START_METHODS:
            raise invalid(f"payment method {method!r} not supported for start")
        if method == "cashless_direct" and not (
            isinstance(body, dict) and body.get("tid") and body.get("trace")
        ):
            raise invalid("cashless_direct needs tid and trace in the body")
        return method

    def _complete(self, tx: Transaction, now: datetime, ends_as: str | None = None) -> None:
        status = ends_as or tx.ends_as
        card = self.world.cards.get(tx.card_number) if tx.card_number else None
        paid = is_paid(status)
        if card is not None and paid:
            self._book(tx, card, now)
        tx.status, tx.updated, tx.completes_at = status, now, None
        if tx.communications and card is not None and paid:
            self._notify(tx, card, now)

    def cancel(self, tx_id: str) -> Transaction:
        tx = self.get(tx_id)
        if is_paid(tx.status):
            self._reverse(tx)
        elif tx.status != "created":
            raise not_allowed(f"Smart transaction {tx_id} has status {tx.status}; cannot cancel")
        tx.status, tx.updated = "cancelled", self._clock()
        return tx

    # --- bookings -------------------------------------------------------------------

    def _book(self, tx: Transaction, card: Card, now: datetime) -> None:
        """Bonus on the eligible basket first, then the load: the seed's receipt order."""
        group = self.world.groups[card.group_id]
        totals = [(p["ean"], p["quantity"] * p["priceOne"]) for p in tx.products]
        eligible = sum(total for ean, total in totals if group.earns_bonus(ean))
        # Whole cents, rounded down: a bonus is never more than the programme's rate.
        tx.bonus_cents = eligible * group.bonus_bp // 10_000
        tx.load_cents = sum(total for ean, total in totals if ean == LOAD_EAN)
        bonus_ta = self.world.ids.ta_code()
        self.world.ids.ta_code()  # the payment's own booking sits between the two
        card.bonus_cents += tx.bonus_cents
        after_bonus = card.balance_cents
        load_ta = self.world.ids.ta_code()
        card.cash_cents += tx.load_cents
        card.last_usage = now
        if tx.load_cents:
            card.last_charge = now
            self._ledger(tx, card, now)
        tx.receipt = build_receipt(
            Booking(
                card_number=card.number,
                currency=tx.currency,
                turnover_cents=tx.basket_sum,
                bonus_cents=tx.bonus_cents,
                balance_after_bonus_cents=after_bonus,
                load_cents=tx.load_cents,
                balance_after_load_cents=card.balance_cents,
                bonus_ta_code=bonus_ta,
                load_ta_code=load_ta,
            )
        )

    def _reverse(self, tx: Transaction) -> None:
        card = self.world.cards.get(tx.card_number) if tx.card_number else None
        if card is None:
            return
        if card.cash_cents < tx.load_cents or card.bonus_cents < tx.bonus_cents:
            raise not_allowed("card balance already spent; cannot cancel the load")
        card.cash_cents -= tx.load_cents
        card.bonus_cents -= tx.bonus_cents
        if tx.load_cents:
            self._ledger(tx, card, self._clock(), reversal=True)

    def _ledger(
        self, tx: Transaction, card: Card, now: datetime, *, reversal: bool = False
    ) -> None:
        sign = -1 if reversal else 1
        self.world.ledger.append(
            {
                "kind": "reversal" if reversal else "load",
                "transaction_id": tx.id,
                "card_number": card.number,
                "amount_cents": sign * tx.load_cents,
                "bonus_cents": sign * tx.bonus_cents,
                "currency": tx.currency,
                "at": timestamp(now),
            }
        )

    def _customer_on_the_fly(self, contact: dict[str, Any]) -> dict[str, Any]:
        customer: dict[str, Any] = {"id": self.world.ids.object_id("PCU"), "contact": contact}
        self.world.customers[customer["id"]] = customer
        return customer

    def _notify(self, tx: Transaction, card: Card, now: datetime) -> None:
        assert tx.communications is not None and tx.customer is not None
        contact = tx.customer["contact"]
        template = self.world.templates[tx.communications["template_id"]]
        load_lines = [p for p in tx.products if p["ean"] == LOAD_EAN] or tx.products
        salutation = contact.get("salutation") or ""
        values = {
            "salutation": _SALUTATIONS.get(salutation.lower(), salutation),
            "title": contact.get("title") or "",
            "forename": contact.get("forename") or "",
            "surname": contact.get("surname") or "",
            "cardnumber": card.number,
            "amount": format_amount_de(tx.load_cents, tx.currency),
            "article_description": load_lines[0]["desc"],
        }
        subject, body = template.subject, template.body
        for key, value in values.items():
            body = body.replace("{{" + key + "}}", value)
        self.world.outbox.append(
            {
                "to": contact["email"],
                "template_id": template.id,
                "transaction_id": tx.id,
                "subject": subject,
                "body": body,
                "placeholders": values,
                "sent_at": timestamp(now),
            }
        )
