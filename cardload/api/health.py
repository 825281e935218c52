"""``GET /healthz`` (the process answers) and ``GET /readyz`` (Redis and the broker
answer too): for load balancers and probes, no key needed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from cardload.api.schemas import Health
from cardload.api.services import Services, services

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process answers")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Redis or the broker does not answer"}},
    summary="Redis and the broker answer",
)
def readyz(found: Annotated[Services, Depends(services)]) -> JSONResponse:
    checks = {"redis": _check(found.redis.ping), "broker": _check(_broker(found))}
    ready = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


def _broker(found: Services) -> Callable[[], object]:
    def ping() -> None:
        with found.producer.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)

    return ping


def _check(probe: Callable[[], object]) -> str:
    try:
        probe()
    except Exception as exc:  # a probe says what failed, never raises
        return f"failed: {type(exc).__name__}"
    return "ok"
