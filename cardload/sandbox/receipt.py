"""The receipt a started load transaction prints, in the seed's exact wording.

Two sections: bonus collection on the whole basket ("Kundenkarte"), then the load
("Kundenkarte Aufladung"). The seed's small inconsistencies (a trailing space after
the first "Kartennummer: ", no colon after the first "Aktuelles Guthaben") are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cardload.secuconnect.money import format_money_de


@dataclass(frozen=True)
class Booking:
    card_number: str
    currency: str
    turnover_cents: int  # the whole basket
    bonus_cents: int  # bonus earned on it
    balance_after_bonus_cents: int
    load_cents: int
    balance_after_load_cents: int
    bonus_ta_code: str
    load_ta_code: str


def _text(text: str, *decoration: str) -> dict[str, Any]:
    return {"type": "textline", "value": {"text": text, "decoration": list(decoration)}}


def _name_value(name: str, value: str) -> dict[str, Any]:
    return {"type": "name-value", "value": {"name": name, "value": value, "decoration": []}}


def _separator(caption: str) -> dict[str, Any]:
    return {"type": "separator", "value": {"caption": caption}}


SPACE: dict[str, Any] = {"type": "space"}


def build_receipt(b: Booking) -> list[dict[str, Any]]:
    def money(cents: int) -> str:
        return format_money_de(cents, b.currency)

    lines = [
        _separator("Kundenkarte"),
        _name_value("Kartennummer: ", b.card_number),
        _name_value("TA Code: ", b.bonus_ta_code),
        SPACE,
        _text("Umsatz erfasst:"),
        _text(money(b.turnover_cents), "important"),
        SPACE,
        _text("Bonus:"),
        _text(money(b.bonus_cents), "important"),
        SPACE,
        _text("Aktuelles Guthaben"),
        _text(money(b.balance_after_bonus_cents), "important"),
    ]
    if b.load_cents:
        lines += [
            _separator("Kundenkarte Aufladung"),
            _name_value("Kartennummer:", b.card_number),
            _name_value("TA Code:", b.load_ta_code),
            SPACE,
            _text("Folgender Betrag"),
            _text("wurde aufgeladen:"),
            _text(money(b.load_cents), "important"),
            SPACE,
            _text("Aktuelles Guthaben:"),
            _text(money(b.balance_after_load_cents), "important"),
        ]
    return lines
