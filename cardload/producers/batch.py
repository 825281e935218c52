"""Batch files (payroll, gift-card top-ups): parse every row, enqueue the valid ones,
report the invalid ones with row, field and reason, and never enqueue a row twice.

A row is identified by what it means, never by the bytes of the file, so fixing an
invalid row and submitting again, saving the file with other line ends or a BOM, or
reordering its rows enqueues only what was not enqueued before:

* a row with a ``reference`` is the load that reference names: key ``ref:<reference>``,
  the same in every file and batch (use one reference per load, for good:
  ``2026-11-emp-001``, not ``emp-001``);
* a row without one needs the batch's name (``--name``, given by the operator, one
  per batch: ``payroll-2026-11``, letter case ignored): key
  ``batch:<name>:<digest>:<n>`` for the n-th row of its content (card, amount,
  currency) in the file. The digest is an HMAC under ``CARDLOAD_JOBS_ROW_KEY_SECRET``,
  so a key shown next to a masked card does not give the card number away. Without a
  name or the secret such a row is refused (the rows with references still go through);
* in a named batch, a row whose key is new but whose content matches a job an earlier
  submission of the batch enqueued under another key (a reference column added or
  removed since) is that job, not a new load.

The batch id is the name, or without one a digest of the rows' keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cardload.jobs import keys
from cardload.jobs.model import CardLoadJob, JobSource, now_utc
from cardload.jobs.replies import text
from cardload.jobs.store import Admission, IdempotencyConflict
from cardload.producers.amounts import AmountError, parse_amount
from cardload.producers.batch_files import (
    COLUMNS,
    BatchFileError,
    Dialect,
    RowError,
    read_records,
)
from cardload.producers.enqueue import CardLoadProducer, NotReplicated

__all__ = ["BatchFileError", "BatchResult", "ParsedRow", "RowError", "parse_batch", "submit_batch"]

CHUNK = 1000
BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


@dataclass(frozen=True)
class Row:
    """A row whose fields are valid: what it asks for, before it has a key."""

    row: int
    card_number: str
    amount_cents: int
    currency: str
    reference: str

    @property
    def content(self) -> str:
        return f"{self.card_number}|{self.amount_cents}|{self.currency}"


@dataclass(frozen=True)
class ParsedRow:
    row: int
    job: CardLoadJob
    reference: str


@dataclass
class BatchResult:
    batch_id: str
    rows: int = 0
    read_as: str = ""  # how the file was read: its dialect and encoding
    enqueued: int = 0
    already_known: int = 0
    invalid: list[RowError] = field(default_factory=list)


def _check_fields(
    number: int, data: dict[str, Any], max_cents: int, dialect: Dialect
) -> Row | RowError:
    """The row's fields, or the first problem with them."""
    unknown = sorted(set(data) - set(COLUMNS))
    card = str(data.get("card_number") or "").replace(" ", "")
    currency = str(data.get("currency") or "EUR").upper()
    reference = str(data.get("reference") or "").strip()
    problem: tuple[str, str] | None = None
    if unknown:
        problem = (unknown[0], "unknown field")
    elif not (len(card) == 16 and card.isascii() and card.isdigit()):
        problem = ("card_number", "must be 16 digits")
    elif currency != "EUR":
        problem = ("currency", f"{currency} not supported (EUR)")
    elif len(reference) > 200:
        problem = ("reference", "longer than 200 characters")
    if problem:
        return RowError(number, *problem)
    try:
        cents = parse_amount(data.get("amount", ""), currency, max_cents, decimal=dialect.decimal)
    except AmountError as exc:
        return RowError(number, "amount", str(exc))
    return Row(number, card, cents, currency, reference)


def _batch_id(name: str | None, row_keys: list[str], invalid: list[RowError]) -> str:
    if name is not None:
        return name
    # The rows' keys and the reasons rows were refused: what the file means, without
    # its card numbers (a digest of those could be brute-forced back).
    meaning = sorted(row_keys) + sorted(f"{e.row}|{e.field}|{e.reason}" for e in invalid)
    return "batch_" + hashlib.sha256("\n".join(meaning).encode()).hexdigest()[:24]


def _keys(
    rows: list[Row], name: str | None, secret: bytes | None
) -> Iterator[tuple[Row, str | RowError]]:
    """Each row's idempotency key, or why it has none."""
    seen_refs: dict[str, int] = {}
    occurrences: Counter[str] = Counter()
    for row in rows:
        if row.reference:
            first = seen_refs.setdefault(row.reference, row.row)
            if first != row.row:
                yield row, RowError(row.row, "reference", f"same reference as row {first}")
            else:
                yield row, f"ref:{row.reference}"
        elif name is None:
            reason = "empty: name the batch (--name) to key rows without a reference"
            yield row, RowError(row.row, "reference", reason)
        elif secret is None:
            reason = "empty: rows without a reference need CARDLOAD_JOBS_ROW_KEY_SECRET set"
            yield row, RowError(row.row, "reference", reason)
        else:
            occurrences[row.content] += 1
            mac = hmac.new(secret, f"{name}|{row.content}".encode(), hashlib.sha256)
            yield row, f"batch:{name}:{mac.hexdigest()[:32]}:{occurrences[row.content]}"


class ParsedBatch(NamedTuple):
    batch_id: str
    valid: list[ParsedRow]
    invalid: list[RowError]  # with row, field and reason
    dialect: Dialect
    encoding: str


def parse_batch(
    content: bytes,
    name: str,
    max_cents: int,
    *,
    batch_name: str | None = None,
    row_key_secret: bytes | None = None,
) -> ParsedBatch:
    """The batch id, the rows to enqueue, the rows refused, and how the file was read."""
    if batch_name is not None:
        if not BATCH_NAME.match(batch_name):
            raise BatchFileError(
                f"batch name {batch_name!r}: 1 to 100 letters, digits, '.', '_', ':' or '-', "
                "starting with a letter or digit"
            )
        batch_name = batch_name.lower()  # one batch, however it is spelt
    rows: list[Row] = []
    invalid: list[RowError] = []
    dialect, encoding, records = read_records(content, name)
    for number, data in records:
        checked = (
            data if isinstance(data, RowError) else _check_fields(number, data, max_cents, dialect)
        )
        if isinstance(checked, RowError):
            invalid.append(checked)
        else:
            rows.append(checked)
    keyed = list(_keys(rows, batch_name, row_key_secret))
    invalid += [key for _, key in keyed if isinstance(key, RowError)]
    batch_id = _batch_id(batch_name, [k for _, k in keyed if isinstance(k, str)], invalid)
    valid = [
        ParsedRow(row.row, _job(row, key, batch_id), row.reference)
        for row, key in keyed
        if isinstance(key, str)
    ]
    invalid.sort(key=lambda e: e.row)
    return ParsedBatch(batch_id, valid, invalid, dialect, encoding)


def _job(row: Row, key: str, batch_id: str) -> CardLoadJob:
    return CardLoadJob(
        idempotency_key=key,
        card_number=row.card_number,
        amount_cents=row.amount_cents,
        currency="EUR",
        source=JobSource(batch_id=batch_id, row=row.row),
    )


def submit_batch(
    producer: CardLoadProducer,
    path: Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    name: str | None = None,
) -> BatchResult:
    content = path.read_bytes()
    jobs = producer.settings.jobs
    secret = jobs.row_key_secret.get_secret_value().encode() if jobs.row_key_secret else None
    batch_file = parse_batch(
        content, path.name, jobs.max_amount_cents, batch_name=name, row_key_secret=secret
    )
    batch_id, valid, invalid = batch_file.batch_id, batch_file.valid, batch_file.invalid
    result = BatchResult(
        batch_id,
        rows=len(valid) + len(invalid),
        invalid=list(invalid),
        read_as=f"{batch_file.dialect.describe()}, {batch_file.encoding}",
    )
    rows: dict[str, int] = {}
    every_key = [p.job.idempotency_key for p in valid]
    if name is not None:
        valid, rows = _match_earlier(producer, batch_id, valid)
        result.already_known = len(rows)
    refused: set[str] = set()
    for start in range(0, len(valid), CHUNK):
        chunk = valid[start : start + CHUNK]
        # Confirmed on the replicas once, at the end, with the batch's own writes.
        outcomes = producer.enqueue_many([p.job for p in chunk], confirm=False)
        for parsed, outcome in zip(chunk, outcomes, strict=True):
            if isinstance(outcome, IdempotencyConflict):
                refused.add(parsed.job.idempotency_key)
                result.invalid.append(
                    RowError(
                        parsed.row,
                        "reference",
                        f"already used for other content (job {outcome.job_id})",
                    )
                )
                continue
            assert isinstance(outcome, Admission)
            rows[outcome.job_id] = parsed.row
            if outcome.created:
                result.enqueued += 1
            else:
                result.already_known += 1
        if progress:
            progress(min(start + CHUNK, len(valid)), len(valid))
    result.invalid.sort(key=lambda e: e.row)
    _save(producer, result, path.name, rows)
    try:
        producer.confirm([key for key in every_key if key not in refused])
    except NotReplicated as exc:
        raise NotReplicated(
            f"batch {batch_id} recorded ({result.enqueued} new, {result.already_known} "
            f"known), not confirmed: {exc}; submit the same file again"
        ) from None
    return result


def _content(job: CardLoadJob) -> tuple[str | None, int, str]:
    return job.card_number, job.amount_cents, job.currency


def _match_earlier(
    producer: CardLoadProducer, batch_id: str, valid: list[ParsedRow]
) -> tuple[list[ParsedRow], dict[str, int]]:
    """Rows an earlier submission of this batch enqueued under another key (a reference
    added or removed since): each row whose key is new takes, by content, one of the
    batch's jobs that no row of this file holds by key. The rows left to enqueue, and
    the matched jobs with their rows."""
    store = producer.store
    earlier = [text(job_id) for job_id in store.redis.hkeys(keys.batch_rows(batch_id))]
    if not earlier:
        return valid, {}
    by_key = store.job_ids_for_keys([p.job.idempotency_key for p in valid])
    held = {job_id for job_id in by_key if job_id}
    pool: defaultdict[tuple[str | None, int, str], list[str]] = defaultdict(list)
    unheld = [job_id for job_id in earlier if job_id not in held]
    for record in store.load_many(unheld, history=False):
        if record is not None:
            pool[_content(record.job)].append(record.job.job_id)
    left: list[ParsedRow] = []
    matched: dict[str, int] = {}
    aliases: list[tuple[CardLoadJob, str]] = []
    for parsed, existing in zip(valid, by_key, strict=True):
        same = pool.get(_content(parsed.job)) if existing is None else None
        if same:
            job_id = same.pop(0)
            matched[job_id] = parsed.row
            aliases.append((parsed.job, job_id))
        else:
            left.append(parsed)
    # The row's new key now names the job it matched: the same reference in another file
    # or batch, later, is that load too, not a second one.
    store.add_keys(aliases)
    return left, matched


def _save(producer: CardLoadProducer, result: BatchResult, name: str, rows: dict[str, int]) -> None:
    """The batch's jobs (each with its row in the latest file that held it), the latest
    file's counts and its invalid rows. Jobs of earlier submissions stay listed."""
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
