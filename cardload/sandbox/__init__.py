"""A local secuconnect simulator: OAuth, Smart Transactions, card loads, receipts,
notifications, an admin API and deterministic fault injection.

Its HTTP server needs the ``sandbox`` extra (``pip install 'cardload[sandbox]'``); the
in-process transport and everything else do not, so the server is imported on use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cardload.errors import MissingExtraError
from cardload.sandbox.app import SandboxApp
from cardload.sandbox.auth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from cardload.sandbox.faults import FaultRule, FaultSettings
from cardload.sandbox.transport import SandboxTransport
from cardload.sandbox.world import (
    CONTRACT_ID,
    DEVICE_ID,
    GIFT_CARD,
    LOCKED_CARD,
    NO_LOAD_BONUS_CARD,
    SEED_CARD,
)

if TYPE_CHECKING:
    from cardload.sandbox.server import SandboxServer, serve_in_thread

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


def __getattr__(name: str) -> Any:
    if name in ("SandboxServer", "serve_in_thread"):
        try:
            server = importlib.import_module("cardload.sandbox.server")
        except ImportError as exc:
            raise MissingExtraError(
                "the sandbox's HTTP server needs the sandbox extra: pip install 'cardload[sandbox]'"
            ) from exc
        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
