"""A local secuconnect simulator: OAuth, Smart Transactions, card loads, receipts,
notifications, an admin API and deterministic fault injection."""

from cardload.sandbox.app import SandboxApp
from cardload.sandbox.auth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from cardload.sandbox.faults import FaultRule, FaultSettings
from cardload.sandbox.server import SandboxServer, serve_in_thread
from cardload.sandbox.transport import SandboxTransport
from cardload.sandbox.world import (
    CONTRACT_ID,
    DEVICE_ID,
    GIFT_CARD,
    LOCKED_CARD,
    NO_LOAD_BONUS_CARD,
    SEED_CARD,
)

__all__ = [
    "CONTRACT_ID",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEVICE_ID",
    "GIFT_CARD",
    "LOCKED_CARD",
    "NO_LOAD_BONUS_CARD",
    "SEED_CARD",
    "FaultRule",
    "FaultSettings",
    "SandboxApp",
    "SandboxServer",
    "SandboxTransport",
    "serve_in_thread",
]
