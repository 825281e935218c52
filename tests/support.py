"""Helpers the tests share: seed files, sandbox credentials, a seed-like request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from secuconnect import Credentials

SEED_DIR = Path(__file__).parent / "fixtures" / "seed"
SHARED_SEED_DIR = Path(__file__).parents[2] / "shared" / "seed"
CREDENTIALS = Credentials(DEFAULT_CLIENT_ID, SecretStr(DEFAULT_CLIENT_SECRET))


def seed(name: str) -> Any:
    return json.loads((SEED_DIR / name).read_text())


def load_request(card: str, cents: int, **extra: Any) -> dict[str, Any]:
    """A create request that loads ``cents`` onto ``card`` and buys nothing else."""
    body: dict[str, Any] = seed("01-create-request.json")
    body["idents"] = [{"type": "card", "value": card}]
    body["basket"]["products"] = [body["basket"]["products"][1] | {"id": 1, "priceOne": cents}]
    body["basket_info"]["sum"] = cents
    return body | extra
