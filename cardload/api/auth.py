"""``Authorization: Bearer <API key>``, and the scope each route needs.

Missing or wrong key: 401 with ``WWW-Authenticate``; a key without the route's scope:
403. Of a key, only its name is ever logged or shown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cardload.api.problems import Problem
from cardload.api.services import Services, services
from cardload.apikeys import ApiKey, Scope

_bearer = HTTPBearer(auto_error=False, description="an API key: cardload api-keys create")


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"}
    )


def require(scope: Scope) -> Callable[..., ApiKey]:
    """A dependency: the caller's key, if it is valid and holds ``scope``."""

    def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        found: Annotated[Services, Depends(services)],
    ) -> ApiKey:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise _unauthorized("send an API key as 'Authorization: Bearer <key>'")
        key = found.api_keys.authenticate(credentials.credentials)
        if key is None:
            raise _unauthorized("the API key is not valid (revoked, or never issued)")
        request.state.api_key = key.name
        if scope not in key.scopes:
            raise Problem(
                403, "forbidden", "Forbidden", f"the API key {key.name!r} lacks the scope {scope!r}"
            )
        return key

    return check
