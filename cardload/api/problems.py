"""Errors as ``application/problem+json`` (RFC 9457), each with a stable ``type``.

A client branches on ``type`` (``urn:cardload:problem:<slug>``), never on ``title`` or
``detail``, which are for people and may change. No problem repeats what was sent: a
body may hold a card number, a header a key."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from cardload.observability.masking import mask_text

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:cardload:problem:"


class FieldError(BaseModel):
    field: str = Field(description="where: a dotted path into the body, or header.NAME")
    reason: str


class ProblemBody(BaseModel):
    """The problem document (RFC 9457); ``errors`` lists every invalid field."""

    type: str = Field(examples=[f"{TYPE_PREFIX}invalid-request"])
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class Problem(Exception):
    """Raised by a route; answered as a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.errors, self.headers = errors, headers


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body = ProblemBody(
        type=TYPE_PREFIX + problem.slug,
        title=problem.title,
        status=problem.status,
        detail=problem.detail,
        instance=mask_text(request.url.path),
        errors=problem.errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=MEDIA_TYPE,
        headers=problem.headers,
    )


def invalid(errors: list[FieldError], detail: str = "the request has invalid fields") -> Problem:
    return Problem(422, "invalid-request", "Invalid request", detail, errors=errors)


def field_errors(errors: Any, *, drop: tuple[str, ...] = ("body",)) -> list[FieldError]:
    """pydantic's errors as fields and reasons, without the input (it may be a card)."""
    out = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if loc[:1] == ["header"]:
            where = f"header.{loc[1]}" if len(loc) > 1 else "header"
        elif error.get("type") == "json_invalid":  # its place is a character offset
            where = "body"
        else:
            where = ".".join(p for p in loc if p not in drop) or "body"
        # A field name is the client's too (an unknown one may be a card number).
        out.append(FieldError(field=mask_text(where), reason=str(error.get("msg", "invalid"))))
    return out


_STATUS_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def install(app: FastAPI) -> None:
    """Every error the app answers, as a problem document."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(request, exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(request, invalid(field_errors(exc.errors())))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        slug, title = _STATUS_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        return problem_response(
            request,
            Problem(exc.status_code, slug, title, detail, headers=dict(exc.headers or {})),
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged by the middleware with the request; the client learns nothing of it.
        return problem_response(request, Problem(500, "internal", "Internal error"))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def documented(
    *statuses: int, also: dict[int | str, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries: these statuses answer a problem document (and
    ``also``, the route's other answers)."""
    return (also or {}) | {
        status: {
            "model": ProblemBody,  # moved to MEDIA_TYPE by problem_openapi
            "description": _STATUS_SLUGS.get(status, ("", _OTHER_TITLES.get(status, "")))[1],
        }
        for status in statuses
    }


_OTHER_TITLES = {409: "Conflict", 422: "Invalid request", 503: "Service unavailable"}


def problem_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """Every error answer documented as what it is: a problem document under
    ``application/problem+json`` (FastAPI writes its models as ``application/json``, and
    adds its own 422 schema, which this app never answers)."""
    problem = {"schema": {"$ref": "#/components/schemas/ProblemBody"}}
    for methods in document.get("paths", {}).values():
        for operation in methods.values():
            for status, answer in operation.get("responses", {}).items():
                if int(status) >= 400:
                    answer["content"] = {MEDIA_TYPE: problem}
                    if status == "422":
                        answer["description"] = "Invalid request: every field named"
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return document
