"""The HTTP API's ASGI app: routes, problem documents, a body limit and request logs.

``create_api()`` builds it for the ``CARDLOAD_*`` settings; ``cardload api`` serves it
with uvicorn. Every route but the health checks needs an API key."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from fastapi import FastAPI

from cardload._version import __version__
from cardload.api import batches, card_loads, dead_letters, health, metrics, problems
from cardload.api.services import Services
from cardload.config import Settings, load_settings

log = structlog.get_logger("cardload.api")

DESCRIPTION = """\
Enqueue card loads (loyalty and gift cards, through secuconnect) and read their
results. Authenticate with an API key (`cardload api-keys create`) as
`Authorization: Bearer <key>`. Amounts are integer cents; card numbers are masked in
every answer. Errors are `application/problem+json` (RFC 9457) with a stable `type`.
"""


def create_api(settings: Settings | None = None, found: Services | None = None) -> FastAPI:
    """The app for ``settings`` (default: the environment), or for ready ``found``."""
    found = found or Services.from_settings(settings or load_settings())
    app = FastAPI(
        title="cardload",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        generate_unique_id_function=lambda route: route.name,  # operation ids: the names
    )
    app.state.services = found
    app.state.batch_slot = asyncio.Lock()
    problems.install(app)
    for module in (card_loads, batches, dead_letters, health, metrics):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, limit=found.settings.api.max_body_bytes)
    app.add_middleware(RequestLog)
    make_document = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problems.problem_openapi(make_document())
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
    return app


class BodyLimit:
    """Refuses a body over ``limit`` bytes with 413, by its length or as it streams;
    batch uploads count their own (larger) limit."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/v1/batches"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, send)
            return
        seen = 0
        refused = False

        async def counted() -> Any:
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit and not refused:
                # Answered here; the app sees the client go (its parser would turn any
                # error raised into a 400 of its own).
                refused = True
                await self._refuse(scope, send)
                return {"type": "http.disconnect"}
            return message

        async def watched(message: Any) -> None:
            if not refused:  # the app's answer to a body cut short goes nowhere
                await send(message)

        try:
            await self.app(scope, counted, watched)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, scope: Any, send: Any) -> None:
        body = problems.ProblemBody(
            type=problems.TYPE_PREFIX + "payload-too-large",
            title="Payload too large",
            status=413,
            detail=f"a request body may hold at most {self.limit} bytes",
            instance=scope["path"],
        ).model_dump_json(exclude_none=True)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", problems.MEDIA_TYPE.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})


class RequestLog:
    """One log line per request: method, path, status, time taken and the API key's
    name (never the key, never a header or a body)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def watched(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            log.exception("api.request_failed", method=scope["method"], path=scope["path"])
            raise
        finally:
            state = scope.get("state") or {}
            log.info(
                "api.request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - began) * 1000, 1),
                api_key=state.get("api_key"),
            )
