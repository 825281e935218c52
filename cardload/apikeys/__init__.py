"""API keys of the HTTP API: made, listed and revoked by name, kept only as hashes."""

from cardload.apikeys.store import (
    SCOPES,
    ApiKey,
    ApiKeyStore,
    NameTaken,
    Scope,
)

__all__ = ["SCOPES", "ApiKey", "ApiKeyStore", "NameTaken", "Scope"]
