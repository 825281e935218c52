"""Batch files (payroll, gift-card top-ups): parse every row, enqueue the valid ones,
report the invalid ones with row, field and reason, and never enqueue a row twice.

A batch's id is the SHA-256 of the file's bytes, and each row's idempotency key is
its ``reference`` (or batch id + row number without one), so submitting the same
file again finds every row already admitted and enqueues nothing new.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from jobs import keys
from jobs.model import CardLoadJob, JobSource, now_utc
from jobs.store import Admission, IdempotencyConflict
from producers.amounts import AmountError, parse_amount
from producers.enqueue import CardLoadProducer

COLUMNS = ("card_number", "amount", "currency", "reference")
REQUIRED = ("card_number", "amount")
CHUNK = 1000


class BatchFileError(ValueError):
    """The file as a whole cannot be read (format, header)."""


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    reason: str


@dataclass(frozen=True)
class ParsedRow:
    row: int
    job: CardLoadJob
    reference: str


@dataclass
class BatchResult:
    batch_id: str
    rows: int = 0
    enqueued: int = 0
    already_known: int = 0
    invalid: list[RowError] = field(default_factory=list)


def batch_id_for(content: bytes) -> str:
    return "batch_" + hashlib.sha256(content).hexdigest()[:24]


def _records(content: bytes, name: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(row number, fields) per data row; row 1 is the first data row."""
    text = content.decode("utf-8-sig")
    if name.endswith((".jsonl", ".ndjson")):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line, parse_float=Decimal)  # exact: 20.10 stays 20.10
            except json.JSONDecodeError as exc:
                yield number, RowError(number, "line", f"not JSON: {exc.msg}")
                continue
            yield (
                number,
                data if isinstance(data, dict) else RowError(number, "line", "not a JSON object"),
            )
        return
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    unknown = [h for h in header if h not in COLUMNS]
    missing = [c for c in REQUIRED if c not in header]
    if unknown or missing:
        raise BatchFileError(
            f"CSV header must be {','.join(COLUMNS)}"
            + (f"; unknown columns: {', '.join(unknown)}" if unknown else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
        )
    for number, row in enumerate(reader, start=1):
        if None in row:
            yield number, RowError(number, "line", "more fields than columns in the header")
            continue
        yield number, {k.strip(): (v or "").strip() for k, v in row.items()}


def _check_fields(data: dict[str, Any], max_cents: int) -> tuple[str, int, str] | RowError:
    """(card number, cents, reference), or the first problem (row number filled in later)."""
    unknown = sorted(set(data) - set(COLUMNS))
    card = str(data.get("card_number") or "").replace(" ", "")
    currency = str(data.get("currency") or "EUR").upper()
    reference = str(data.get("reference") or "").strip()
    problem: tuple[str, str] | None = None
    if unknown:
        problem = (unknown[0], "unknown field")
    elif not (len(card) == 16 and card.isdigit()):
        problem = ("card_number", "must be 16 digits")
    elif currency != "EUR":
        problem = ("currency", f"{currency} not supported (EUR)")
    elif len(reference) > 200:
        problem = ("reference", "longer than 200 characters")
    if problem:
        return RowError(0, *problem)
    try:
        return card, parse_amount(data.get("amount", ""), currency, max_cents), reference
    except AmountError as exc:
        return RowError(0, "amount", str(exc))


def _row_job(
    number: int, data: dict[str, Any], batch_id: str, max_cents: int
) -> ParsedRow | RowError:
    checked = _check_fields(data, max_cents)
    if isinstance(checked, RowError):
        return RowError(number, checked.field, checked.reason)
    card, cents, reference = checked
    job = CardLoadJob(
        idempotency_key=f"ref:{reference}" if reference else f"{batch_id}:row:{number}",
        card_number=card,
        amount_cents=cents,
        currency="EUR",
        source=JobSource(batch_id=batch_id, row=number),
    )
    return ParsedRow(number, job, reference)


def parse_batch(
    content: bytes, name: str, max_cents: int
) -> tuple[str, list[ParsedRow], list[RowError]]:
    batch_id = batch_id_for(content)
    valid: list[ParsedRow] = []
    invalid: list[RowError] = []
    for number, data in _records(content, name):
        parsed = data if isinstance(data, RowError) else _row_job(number, data, batch_id, max_cents)
        if isinstance(parsed, RowError):
            invalid.append(parsed)
        else:
            valid.append(parsed)
    return batch_id, valid, invalid


def submit_batch(
    producer: CardLoadProducer, path: Path, progress: Callable[[int, int], None] | None = None
) -> BatchResult:
    content = path.read_bytes()
    batch_id, valid, invalid = parse_batch(
        content, path.name, producer.settings.jobs.max_amount_cents
    )
    result = BatchResult(batch_id, rows=len(valid) + len(invalid), invalid=list(invalid))
    rows: dict[str, str] = {}
    for start in range(0, len(valid), CHUNK):
        chunk = valid[start : start + CHUNK]
        for parsed, outcome in zip(
            chunk, producer.enqueue_many([p.job for p in chunk]), strict=True
        ):
            if isinstance(outcome, IdempotencyConflict):
                result.invalid.append(
                    RowError(
                        parsed.row,
                        "reference",
                        f"already used for other content (job {outcome.job_id})",
                    )
                )
                continue
            assert isinstance(outcome, Admission)
            rows[str(parsed.row)] = outcome.job_id
            if outcome.created:
                result.enqueued += 1
            else:
                result.already_known += 1
        if progress:
            progress(min(start + CHUNK, len(valid)), len(valid))
    result.invalid.sort(key=lambda e: e.row)
    _save(producer, result, path.name, rows)
    return result


def _save(producer: CardLoadProducer, result: BatchResult, name: str, rows: dict[str, str]) -> None:
    client = producer.store.redis
    pipe = client.pipeline(transaction=True)
    pipe.hsetnx(keys.batch(result.batch_id), "created_at", now_utc().isoformat())
    meta: dict[Any, Any] = {"file": name, "rows": result.rows, "invalid": len(result.invalid)}
    pipe.hset(keys.batch(result.batch_id), mapping=meta)
    if rows:
        pipe.hset(keys.batch_rows(result.batch_id), mapping=dict[Any, Any](rows))
    pipe.delete(keys.batch_invalid(result.batch_id))
    if result.invalid:
        pipe.rpush(
            keys.batch_invalid(result.batch_id), *[json.dumps(e.__dict__) for e in result.invalid]
        )
    pipe.execute()
