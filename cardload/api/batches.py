"""``POST /v1/batches`` (a CSV or JSON Lines file, as ``cardload batch submit`` takes
it), ``GET /v1/batches/{id}`` and its ``report.csv``.

The upload streams to a temporary file, counted as it comes: past
``CARDLOAD_API_MAX_BATCH_BYTES`` it is refused with 413 and the rest is not read."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from cardload.api.auth import require
from cardload.api.card_loads import unavailable
from cardload.api.problems import Problem, documented
from cardload.api.schemas import BatchAccepted, BatchView, RowProblem
from cardload.api.services import Services, services
from cardload.apikeys import ApiKey
from cardload.observability.masking import mask_text
from cardload.producers.batch import BatchFileError, submit_batch
from cardload.producers.batch_report import (
    REPORT_COLUMNS,
    UnknownBatch,
    batch_report,
    batch_status,
)
from cardload.producers.enqueue import BrokerUnavailable, JobStoreUnavailable

router = APIRouter(prefix="/v1/batches", tags=["batches"])

# The media types of a batch file, and the file name it is read as (its dialect).
_MEDIA = {
    "text/csv": "upload.csv",
    "application/csv": "upload.csv",
    "application/jsonl": "upload.jsonl",
    "application/x-ndjson": "upload.jsonl",
    "application/x-jsonlines": "upload.jsonl",
}
_CSV_BODY = {"content": {"text/csv": {"schema": {"type": "string"}}}}
_JSONL_BODY = {"application/jsonl": {"schema": {"type": "string"}}}
_UPLOAD = {"requestBody": {"required": True, "content": _CSV_BODY["content"] | _JSONL_BODY}}


@router.post(
    "",
    status_code=202,
    response_model=BatchAccepted,
    responses=documented(400, 401, 403, 413, 415, 422, 503),
    openapi_extra=_UPLOAD,
    summary="Enqueue every valid row of a batch file",
)
async def submit_batch_file(
    request: Request,
    response: Response,
    _: Annotated[ApiKey, Depends(require("submit"))],
    found: Annotated[Services, Depends(services)],
    name: Annotated[
        str | None,
        Query(
            max_length=100,
            description="the batch's name, one per batch (payroll-2026-11): keys rows "
            "without a reference, and is the batch id",
        ),
    ] = None,
) -> BatchAccepted:
    """A CSV (``text/csv``: ',' or ';' separated, English or German headers) or JSON
    Lines (``application/jsonl``) file. Invalid rows are listed with row, field and
    reason; the valid ones are enqueued all the same."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _MEDIA:
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"send the file as one of {', '.join(sorted(_MEDIA))}",
        )
    limit = found.settings.api.max_batch_bytes
    with tempfile.TemporaryDirectory(prefix="cardload-batch-") as folder:
        path = Path(folder) / _MEDIA[media]
        size = 0
        with path.open("wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Problem(
                        413,
                        "payload-too-large",
                        "Payload too large",
                        f"a batch file may hold at most {limit} bytes; split it",
                    )
                out.write(chunk)
        try:
            async with request.app.state.batch_slot:  # one parse at a time: its memory
                result = await run_in_threadpool(submit_batch, found.producer, path, name=name)
        except BatchFileError as exc:
            detail = mask_text(str(exc))  # it may quote the batch's name
            raise Problem(422, "invalid-batch-file", "Invalid batch file", detail) from None
        except (JobStoreUnavailable, BrokerUnavailable) as exc:
            raise unavailable(exc) from None
    response.headers["Location"] = f"/v1/batches/{result.batch_id}"
    return BatchAccepted(
        batch_id=result.batch_id,
        read_as=result.read_as,
        rows=result.rows,
        enqueued=result.enqueued,
        already_enqueued=result.already_known,
        invalid=[RowProblem(row=e.row, field=e.field, reason=e.reason) for e in result.invalid],
    )


def _unknown(batch_id: str) -> Problem:
    return Problem(404, "not-found", "Not found", "no batch with this id")


@router.get(
    "/{batch_id}",
    response_model=BatchView,
    responses=documented(401, 403, 404),
    summary="A batch's counts by status",
)
def get_batch(
    batch_id: str,
    _: Annotated[ApiKey, Depends(require("read"))],
    found: Annotated[Services, Depends(services)],
) -> BatchView:
    if len(batch_id) > 128:
        raise _unknown(batch_id[:128])
    try:
        status = batch_status(found.store, batch_id)
    except UnknownBatch:
        raise _unknown(batch_id) from None
    return BatchView(
        batch_id=status.batch_id,
        file=status.file,
        rows=status.rows,
        invalid=status.invalid,
        by_status=dict(status.by_status),
        finished=status.finished,
    )


@router.get(
    "/{batch_id}/report.csv",
    response_class=Response,
    responses=documented(
        401, 403, 404, also={200: {"content": {"text/csv": {}}, "description": "one line per row"}}
    ),
    summary="One CSV line per row: outcome, transaction, new balance, error",
)
def get_batch_report(
    batch_id: str,
    _: Annotated[ApiKey, Depends(require("read"))],
    found: Annotated[Services, Depends(services)],
) -> Response:
    if len(batch_id) > 128:
        raise _unknown(batch_id[:128])
    try:
        lines = batch_report(found.store, batch_id, mask=True)
    except UnknownBatch:
        raise _unknown(batch_id) from None
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(lines)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{batch_id}-report.csv"'},
    )
