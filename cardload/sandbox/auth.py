"""OAuth 2 client_credentials and bearer-token checks, as secuconnect does them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cardload.sandbox.failures import unauthorized
from cardload.sandbox.ids import IdFactory

DEFAULT_CLIENT_ID = "sandbox-client"
DEFAULT_CLIENT_SECRET = "sandbox-secret"  # a simulator's published default
DEFAULT_TOKEN_TTL_S = 1200
SCOPE = "https://scope.secucard.com/e/api"


class OAuthFailure(Exception):
    def __init__(self, http_status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.http_status = http_status
        self.body = {"error": error, "error_description": description}


@dataclass
class Auth:
    ids: IdFactory
    clock: Callable[[], float]
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    token_ttl_s: int = DEFAULT_TOKEN_TTL_S
    _expiry: dict[str, float] = field(default_factory=dict)

    def issue(self, form: dict[str, Any]) -> dict[str, Any]:
        if form.get("grant_type") != "client_credentials":
            if not form.get("grant_type"):
                raise OAuthFailure(400, "invalid_request", "grant_type is required")
            raise OAuthFailure(
                400, "unsupported_grant_type", "only client_credentials is supported"
            )
        if not form.get("client_id") or not form.get("client_secret"):
            raise OAuthFailure(400, "invalid_request", "client_id and client_secret are required")
        if form["client_id"] != self.client_id or form["client_secret"] != self.client_secret:
            raise OAuthFailure(401, "invalid_client", "client authentication failed")
        token = self.ids.token()
        now = self.clock()
        self._expiry = {t: exp for t, exp in self._expiry.items() if exp > now}
        self._expiry[token] = now + self.token_ttl_s
        return {
            "access_token": token,
            "expires_in": self.token_ttl_s,
            "token_type": "bearer",
            "scope": SCOPE,
        }

    def check(self, headers: dict[str, str]) -> None:
        """Accept ``Authorization: Bearer`` and the guide's ``Authenticate: Bearer``."""
        value = headers.get("authorization") or headers.get("authenticate") or ""
        scheme, _, token = value.partition(" ")
        expiry = self._expiry.get(token.strip()) if scheme.lower() == "bearer" else None
        if expiry is None or expiry <= self.clock():
            raise unauthorized()

    def expire_all(self) -> int:
        expired = len(self._expiry)
        self._expiry.clear()
        return expired
