"""Payment methods: how ``/start/{method}`` and ``/prepare/{method}`` take them.

Sources (README, "Choices"): the current PHP and Java SDKs' ``startTransaction`` and
``prepare`` documentation; secupay's POS integration guide for card loads ("It is
always /start/cash when the merchant conducts an ECR payment without secupay").
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from cardload.config import LoadMethod

# Start without a prepare before it: the SDKs' list, plus "demo" (their tests use it).
StartMethod = Literal[
    "cash",
    "cashless",
    "debit",
    "invoice",
    "loyalty",
    "prepaid",
    "cashless_direct",
    "ccload",
    "demo",
]
START_METHODS: Final[frozenset[str]] = frozenset(get_args(StartMethod))

# Authorise first; the start that follows may then be bare (``/start``).
PREPARE_METHODS: Final = frozenset(
    {
        "creditcard",
        "debit",
        "easycredit",
        "invoice",
        "paypal",
        "prepaid",
        "eps",
        "giropay",
        "sofort",
    }
)

# What a card load may be paid with (a setting, so config owns the list).
LOAD_METHODS: Final[frozenset[str]] = frozenset(get_args(LoadMethod))
