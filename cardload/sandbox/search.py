"""The list endpoint's search language, as the SDKs document ``q`` and ``sort``.

``q`` is ``property:condition`` terms: a condition is a value (``?`` one character,
``*`` any run of characters), a quoted value (for spaces; wildcards still count, as
the real API gives no way to escape them) or a range ``[min TO max]`` (``*`` open).
Terms combine with ``AND`` (or mere juxtaposition), ``OR`` and ``NOT``; braces or
parentheses group: ``{status:ok OR status:pending} AND NOT merchantRef:test-*``.
``sort`` is ``field:asc|desc`` (or ``dsc``), several separated by commas.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cardload.sandbox.failures import invalid
from cardload.sandbox.world import Transaction

# What a property reads from a transaction (every value compared as text or number).
FIELDS: dict[str, Callable[[Transaction], Any]] = {
    "id": lambda tx: tx.id,
    "status": lambda tx: tx.status,
    "merchantRef": lambda tx: tx.merchant_ref,
    "transactionRef": lambda tx: tx.transaction_ref,
    "created": lambda tx: tx.created,
    "updated": lambda tx: tx.updated,
    "intent": lambda tx: tx.intent,
    "basket_info.sum": lambda tx: tx.basket_sum,
    "basket_info.currency": lambda tx: tx.currency,
    "idents.value": lambda tx: tx.card_number,
}

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<open>[{(]) | (?P<close>[})]) |
        (?P<range>\[[^\]]*\]) |
        (?P<quoted>"(?:[^"\\]|\\.)*") |
        (?P<colon>:) |
        (?P<word>[^\s:{}()\[\]"]+)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Term:
    field: str
    value: str | None = None  # a value, maybe with wildcards
    low: str | None = None  # or a range: [low TO high]; "*" is open
    high: str | None = None

    def matches(self, tx: Transaction) -> bool:
        actual = FIELDS[self.field](tx)
        if actual is None:
            return False
        if self.value is not None:
            return fnmatch.fnmatchcase(_text(actual), self.value.replace("[", "[[]"))
        return _at_least(actual, self.low) and _at_most(actual, self.high)


@dataclass(frozen=True)
class Not:
    inner: Node

    def matches(self, tx: Transaction) -> bool:
        return not self.inner.matches(tx)


@dataclass(frozen=True)
class All:
    parts: tuple[Node, ...]

    def matches(self, tx: Transaction) -> bool:
        return all(part.matches(tx) for part in self.parts)


@dataclass(frozen=True)
class Any_:
    parts: tuple[Node, ...]

    def matches(self, tx: Transaction) -> bool:
        return any(part.matches(tx) for part in self.parts)


Node = Term | Not | All | Any_


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _bound(actual: Any, bound: str) -> Any:
    if isinstance(actual, int):
        if not re.fullmatch(r"-?\d+", bound):
            raise invalid(f"q: {bound!r} is not a number")
        return int(bound)
    if isinstance(actual, datetime):
        try:
            parsed = datetime.fromisoformat(bound)
        except ValueError:
            raise invalid(f"q: {bound!r} is not a date") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=actual.tzinfo)
    return bound


def _at_least(actual: Any, low: str | None) -> bool:
    return low in (None, "*") or actual >= _bound(actual, str(low))


def _at_most(actual: Any, high: str | None) -> bool:
    return high in (None, "*") or actual <= _bound(actual, str(high))


class _Parser:
    def __init__(self, q: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(q):
            match = _TOKEN.match(q, pos)
            if match is None or match.end() == pos:
                if q[pos:].strip():
                    raise invalid(f"q: cannot read {q[pos:]!r}")
                break
            kind = match.lastgroup
            if kind is not None:
                self.tokens.append((kind, match.group(kind)))
            pos = match.end()
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise invalid("q: ends too early")
        self.pos += 1
        return token

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token == ("word", word)

    def expression(self) -> Node:
        parts = [self.conjunction()]
        while self.is_word("OR"):
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Any_(tuple(parts))

    def conjunction(self) -> Node:
        parts = [self.negation()]
        while (token := self.peek()) is not None and token[0] != "close" and not self.is_word("OR"):
            if self.is_word("AND"):
                self.take()
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def negation(self) -> Node:
        if self.is_word("NOT"):
            self.take()
            return Not(self.negation())
        return self.primary()

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "open":
            inner = self.expression()
            if self.take()[0] != "close":
                raise invalid("q: a group is not closed")
            return inner
        if kind != "word" or self.take()[0] != "colon":
            raise invalid(f"q: expected property:condition at {text!r}")
        if text not in FIELDS:
            raise invalid(f"q: unknown property {text!r}; known: {', '.join(FIELDS)}")
        return self.condition(text)

    def condition(self, field: str) -> Term:
        kind, text = self.take()
        if kind == "range":
            low, sep, high = text[1:-1].partition(" TO ")
            if not sep:
                raise invalid(f"q: a range is [min TO max], not {text}")
            return Term(field, low=low.strip(), high=high.strip())
        if kind == "quoted":
            return Term(field, value=re.sub(r"\\(.)", r"\1", text[1:-1]))
        if kind == "word":
            return Term(field, value=text)
        raise invalid(f"q: no condition for {field!r}")


def parse(q: str) -> Node:
    parser = _Parser(q)
    node = parser.expression()
    if parser.peek() is not None:
        raise invalid(f"q: cannot read {parser.peek()}")
    return node


def exact_merchant_refs(node: Node) -> list[str] | None:
    """The merchantRefs a query asks for exactly, if it is one term without wildcards or
    an OR of such terms (the engine answers it from its index, however many
    transactions there are)."""
    if isinstance(node, Any_):
        refs = [exact_merchant_refs(part) for part in node.parts]
        return None if None in refs else [ref for part in refs for ref in part or ()]
    if isinstance(node, Term) and node.field == "merchantRef" and node.value is not None:
        return None if any(c in node.value for c in "*?") else [node.value]
    return None


def ordered(transactions: list[Transaction], sort: str) -> list[Transaction]:
    """``sort`` as ``created:asc,status:desc``: the first key decides first."""
    keys = []
    for part in sort.split(","):
        field, _, order = part.strip().partition(":")
        # "dsc" is how the older SDK docs spell descending; the newer ones say "desc".
        if field not in FIELDS or order.lower() not in ("", "asc", "desc", "dsc"):
            raise invalid(f"sort: {part!r}; use field:asc or field:desc ({', '.join(FIELDS)})")
        keys.append((FIELDS[field], order.lower() in ("desc", "dsc")))
    for getter, descending in reversed(keys):  # stable sorts, last key first
        transactions = sorted(transactions, key=_none_last(getter), reverse=descending)
    return transactions


def _none_last(getter: Callable[[Transaction], Any]) -> Callable[[Transaction], tuple[bool, Any]]:
    def key(tx: Transaction) -> tuple[bool, Any]:
        value = getter(tx)
        return value is None, value

    return key
