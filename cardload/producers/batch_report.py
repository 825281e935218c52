"""What became of a batch: counts by status, and one report line per row."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from cardload.errors import CardloadError
from cardload.jobs import keys
from cardload.jobs.model import JobRecord
from cardload.jobs.replies import text
from cardload.jobs.store import JobStore
from cardload.observability.masking import mask_card_number

REPORT_COLUMNS = (
    "row",
    "outcome",
    "card_number",
    "amount_cents",
    "currency",
    "transaction_id",
    "new_balance_cents",
    "new_cash_cents",
    "new_bonus_cents",
    "error",
    "job_id",
)


@dataclass
class BatchStatus:
    batch_id: str
    file: str
    rows: int
    invalid: int
    by_status: Counter[str] = field(default_factory=Counter)
    done: int = 0  # jobs finished with their result event out

    @property
    def finished(self) -> bool:
        return self.done == sum(self.by_status.values())


class UnknownBatch(CardloadError, LookupError):
    pass


def _rows(store: JobStore, batch_id: str) -> tuple[dict[str, str], list[tuple[int, str]]]:
    meta = {text(k): text(v) for k, v in store.redis.hgetall(keys.batch(batch_id)).items()}
    if not meta:
        raise UnknownBatch(f"no batch {batch_id}")
    rows = sorted(
        (int(text(r)), text(j)) for j, r in store.redis.hgetall(keys.batch_rows(batch_id)).items()
    )
    return meta, rows


def batch_status(store: JobStore, batch_id: str) -> BatchStatus:
    meta, rows = _rows(store, batch_id)
    records = store.load_many([job_id for _, job_id in rows], history=False)
    status = BatchStatus(
        batch_id, meta.get("file", ""), int(meta.get("rows", 0)), int(meta.get("invalid", 0))
    )
    status.by_status.update(r.status.value for r in records if r is not None)
    status.done = sum(1 for r in records if r is not None and r.done)
    return status


def _error_text(record: JobRecord) -> str:
    error = record.error
    if error is None:
        return ""
    return (
        f"{error.message} ({error.api_error_details})" if error.api_error_details else error.message
    )


def _cents(value: int | None) -> int | str:
    return "" if value is None else value


def _line(row: int, job_id: str, record: JobRecord | None, mask: bool) -> dict[str, object]:
    if record is None:
        return {"row": row, "outcome": "missing", "job_id": job_id}
    job, result = record.job, record.result
    card = job.card_number or ""
    return {
        "row": row,
        "outcome": record.status.value,
        "card_number": mask_card_number(card) if mask and card else card,
        "amount_cents": job.amount_cents,
        "currency": job.currency,
        "transaction_id": record.transaction_id or "",
        "new_balance_cents": _cents(result.total_cents) if result else "",
        "new_cash_cents": _cents(result.cash_cents) if result else "",
        "new_bonus_cents": _cents(result.bonus_cents) if result else "",
        "error": _error_text(record) if record.status.value == "dead_lettered" else "",
        "job_id": job_id,
    }


def batch_report(store: JobStore, batch_id: str, *, mask: bool = True) -> list[dict[str, object]]:
    """Every row of the file: enqueued rows with their job's outcome, invalid rows with
    the reason they were refused."""
    _, rows = _rows(store, batch_id)
    records = store.load_many([job_id for _, job_id in rows], history=False)
    lines = [
        _line(row, job_id, record, mask)
        for (row, job_id), record in zip(rows, records, strict=True)
    ]
    for raw in store.redis.lrange(keys.batch_invalid(batch_id), 0, -1):
        error = json.loads(raw)
        lines.append(
            {
                "row": error["row"],
                "outcome": "invalid",
                "error": f"{error['field']}: {error['reason']}",
            }
        )
    return sorted(lines, key=lambda line: int(str(line["row"])))
