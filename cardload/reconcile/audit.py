"""``cardload reconcile``: the Smart Transactions the API holds for a period, joined with
the job records, as an accountant would check them.

The API is asked for every transaction created in the period (the list endpoint, newest
first, a page of 100 at a time, until one older than the period). Each is matched to
its job by ``merchantRef`` (a job's idempotency key is its transaction's merchantRef):

- ``ok``: a paid transaction, and its job succeeded with it (or succeeded long enough
  ago for its record to have expired, its key still naming it). Nothing to do.
- ``loaded_anyway``: paid, and its job was dead-lettered: the card was loaded although
  the job said it failed. A person settles it (a replay reads it and succeeds).
- ``second_load``: paid, and its job succeeded with another transaction: the card was
  loaded twice. A person refunds one.
- ``unclaimed``: paid, and no job holds its merchantRef (another system's, or a job
  whose key expired): a person looks at it.
- ``left_created``: never started, older than the grace period, and no job will start
  it (its job ended, or went on with another transaction): ``--apply`` cancels it.
- ``in_progress``: created or under way, and its job still runs: nothing to do yet.
- ``failed``: the payment failed; nothing was loaded.

A person is needed for ``loaded_anyway``, ``second_load``, ``unclaimed``, and for
``left_created`` unless it was cancelled.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis

from cardload.config import RetrySettings
from cardload.jobs.model import JobRecord, JobStatus
from cardload.jobs.store import JobStore
from cardload.observability import get_logger, mask_card_number
from cardload.secuconnect import SecuconnectClient, SecuconnectError, SmartTransaction
from cardload.secuconnect.backoff import backoff_delay_s
from cardload.secuconnect.errors import RetryableError
from cardload.secuconnect.models import SmartTransactionList
from cardload.secuconnect.statuses import is_failed, is_paid

log = get_logger(__name__)

PAGE = 100
MAX_PAGE_WAIT_S = 30.0  # a person is waiting for the report
NEEDS_A_PERSON = frozenset({"loaded_anyway", "second_load", "unclaimed", "left_created"})


@dataclass(frozen=True)
class Finding:
    kind: str
    transaction_id: str
    status: str
    merchant_ref: str
    amount_cents: int | None
    card: str  # masked
    created: str
    job_id: str = ""
    job_status: str = ""
    action: str = ""

    @property
    def needs_a_person(self) -> bool:
        return self.kind in NEEDS_A_PERSON and self.action != "cancelled"


@dataclass
class Reconciliation:
    since: datetime
    until: datetime
    findings: list[Finding] = field(default_factory=list)
    # Why the listing stopped early (the API kept failing): the findings are a part.
    incomplete: str = ""

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for finding in self.findings:
            out[finding.kind] = out.get(finding.kind, 0) + 1
        return out

    @property
    def needs_a_person(self) -> list[Finding]:
        return [f for f in self.findings if f.needs_a_person]


def reconcile(
    client: SecuconnectClient,
    store: JobStore,
    *,
    since: datetime,
    until: datetime,
    grace: timedelta,
    apply: bool = False,
    now: datetime,
    retry: RetrySettings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Reconciliation:
    """Join the API's transactions created in ``[since, until)`` with the job records;
    with ``apply``, cancel the ``left_created`` ones. A page the API fails to give for a
    while (5xx, 429, a timeout) is asked for again with ``retry``'s backoff: listing
    changes nothing."""
    result = Reconciliation(since, until)
    pager = _Pager(client, retry or RetrySettings(), sleep)
    try:
        # Each page judged (and acted on) before the next is asked for: a status read
        # minutes ago is not one to cancel on.
        for page in _pages(pager, since, until):
            result.findings += _judge(client, store, page, _When(grace, now), apply=apply)
    except SecuconnectError as exc:
        log.error("reconcile.incomplete", kind=exc.kind, error=exc.message)
        result.incomplete = f"the API stopped answering the list ({exc.kind}): {exc.message}"
    except redis.RedisError as exc:  # what was judged (and cancelled) so far is reported
        log.error("reconcile.incomplete", kind="redis", error=type(exc).__name__)
        result.incomplete = f"the job store stopped answering ({type(exc).__name__})"
    return result


@dataclass
class _Pager:
    """One page of the API's list, asked for again while the failure is a passing one."""

    client: SecuconnectClient
    retry: RetrySettings
    sleep: Callable[[float], None]

    def page(self, offset: int) -> SmartTransactionList:
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                return self.client.search(count=PAGE, offset=offset, sort="created:desc")
            except RetryableError as exc:
                if attempt == self.retry.max_attempts:
                    raise
                delay = backoff_delay_s(
                    attempt,
                    base_s=self.retry.base_backoff_s,
                    cap_s=min(self.retry.max_backoff_s, MAX_PAGE_WAIT_S),
                    uniform=random.random,
                )
                # The server's Retry-After counts even above our own cap.
                retry_after = getattr(exc, "retry_after_s", None) or 0.0
                delay = max(delay, min(retry_after, MAX_PAGE_WAIT_S))
                log.warning("reconcile.page_retry", offset=offset, kind=exc.kind, delay_s=delay)
                self.sleep(delay)
        raise AssertionError("unreachable: the last attempt raises")


def _pages(pager: _Pager, since: datetime, until: datetime) -> Iterator[list[SmartTransaction]]:
    """The period's transactions, a page at a time, each once."""
    offset = 0
    seen: set[str] = set()
    while True:
        page = pager.page(offset)
        found: list[SmartTransaction] = []
        older = False
        for tx in page.data:
            # Newest first: a transaction made while we page pushes the rest down, and
            # the next page starts with one already seen.
            if tx.created is None or tx.id in seen:
                continue
            seen.add(tx.id)
            if tx.created < since:
                older = True  # newest first: the rest are older still
                break
            if tx.created < until:
                found.append(tx)
        if found:
            yield found
        offset += len(page.data)
        if older or not page.data or offset >= page.count:
            return


@dataclass(frozen=True)
class _When:
    grace: timedelta
    now: datetime


def _judge(
    client: SecuconnectClient,
    store: JobStore,
    txs: list[SmartTransaction],
    when: _When,
    *,
    apply: bool,
) -> list[Finding]:
    refs = [tx.merchant_ref or "" for tx in txs]
    job_ids = store.job_ids_for_keys(refs)
    records = store.load_many([j for j in job_ids if j], history=False)
    by_id = {r.job.job_id: r for r in records if r is not None}
    out = []
    for listed, job_id in zip(txs, job_ids, strict=True):
        record = by_id.get(job_id) if job_id else None
        kind = _kind(listed, record, keyed=bool(job_id), when=when)
        if kind == "left_created":
            found = _left_created(client, store, listed, (job_id or "", record), when, apply=apply)
            out.append(found)
        else:
            out.append(_finding(kind, listed, job_id or "", record, ""))
    return out


def _left_created(
    client: SecuconnectClient,
    store: JobStore,
    listed: SmartTransaction,
    job: tuple[str, JobRecord | None],
    when: _When,
    *,
    apply: bool,
) -> Finding:
    """Read both again before judging (and cancelling): the job may have started it since
    the page was read, and cancelling a paid transaction reverses the load."""
    job_id, record = job
    try:
        tx = client.get(listed.id)
    except SecuconnectError as exc:
        action = f"not cancelled: could not read it again ({exc.kind})" if apply else ""
        return _finding("left_created", listed, job_id, record, action)
    record = store.load(job_id, history=False) if job_id else None
    kind = _kind(tx, record, keyed=bool(job_id), when=when)
    action = _cancel(client, tx) if kind == "left_created" and apply else ""
    return _finding(kind, tx, job_id, record, action)


def _kind(tx: SmartTransaction, record: JobRecord | None, *, keyed: bool, when: _When) -> str:
    if is_failed(tx.status):
        return "failed"
    if is_paid(tx.status):
        return _paid(tx, record, keyed=keyed)
    old = tx.created is not None and when.now - tx.created > when.grace
    ours_running = (
        record is not None and not record.status.terminal and record.transaction_id == tx.id
    )
    return "left_created" if tx.status == "created" and old and not ours_running else "in_progress"


def _paid(tx: SmartTransaction, record: JobRecord | None, *, keyed: bool) -> str:
    if record is None:
        # A key without its record: the job succeeded and its record has expired
        # (CARDLOAD_RETENTION_JOBS_S); only a success lets a record expire.
        return "ok" if keyed else "unclaimed"
    if record.status is JobStatus.DEAD_LETTERED:
        return "loaded_anyway"
    if record.status is JobStatus.SUCCEEDED:
        return "ok" if record.transaction_id == tx.id else "second_load"
    return "in_progress"


def _cancel(client: SecuconnectClient, tx: SmartTransaction) -> str:
    try:
        client.cancel(tx.id)
    except SecuconnectError as exc:
        log.warning("reconcile.cancel_failed", transaction_id=tx.id, error=exc.message)
        return f"cancel failed: {exc.kind}"
    log.info("reconcile.cancelled", transaction_id=tx.id)
    return "cancelled"


def _finding(
    kind: str, tx: SmartTransaction, job_id: str, record: JobRecord | None, action: str
) -> Finding:
    number = tx.card_number
    return Finding(
        kind=kind,
        transaction_id=tx.id,
        status=tx.status,
        merchant_ref=tx.merchant_ref or "",
        amount_cents=tx.basket_info.sum if tx.basket_info else None,
        card=mask_card_number(number) if number else "",
        created=tx.created.isoformat() if tx.created else "",
        job_id=job_id,
        job_status=record.status.value if record else ("expired" if job_id else ""),
        action=action,
    )
