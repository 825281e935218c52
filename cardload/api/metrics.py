"""``GET /metrics``: cardload's Prometheus metrics as this API process sees them (its
own requests' counters are the worker's business: an API process counts nothing of a
job's steps) and the gauges read at each scrape: queue depth, dead letters, jobs not
yet finished. Scope ``read``: Prometheus sends the key as a bearer token
(``authorization: {credentials_file: ...}`` in its scrape config)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cardload.api.auth import require
from cardload.api.problems import documented
from cardload.api.services import Services, services
from cardload.apikeys import ApiKey
from cardload.observability.metrics import REGISTRY
from cardload.worker.metrics import register_gauges

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"},
        **documented(401, 403),
    },
    summary="Prometheus metrics",
)
def metrics(
    _key: Annotated[ApiKey, Depends(require("read"))],
    found: Annotated[Services, Depends(services)],
) -> Response:
    register_gauges(found.producer.app, found.settings)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
