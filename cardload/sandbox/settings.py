"""cardload's settings pointed at a sandbox: its credentials, contract and device."""

from __future__ import annotations

from typing import Any

from cardload.config import Settings
from cardload.sandbox.auth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from cardload.sandbox.world import CONTRACT_ID, DEVICE_ID


def sandbox_settings(redis_url: str, base_url: str, **sections: dict[str, Any]) -> Settings:
    """Settings for a sandbox at ``base_url``; ``sections`` override per section
    (``retry={"max_attempts": 4}``). No environment or ``.env`` is read."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "secuconnect": {
            "base_url": base_url,
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "contract_id": CONTRACT_ID,
            "device_id": DEVICE_ID,
        },
    }
    for name, section in sections.items():
        values[name] = {**values.get(name, {}), **section}
    return Settings(_env_file=None, **values)
