"""``cardload enqueue``, ``cardload job``, ``cardload jobs recover|purge``."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from cardload.cli.context import Context
from cardload.cli.failures import EXIT_ATTENTION, EXIT_INPUT
from cardload.cli.output import add_json_flag, balances_text, emit_json, history_table, pairs
from cardload.jobs.model import CardLoadJob, JobRecord, JobSource, LoadResult
from cardload.jobs.retention import parse_duration, purge_finished
from cardload.jobs.store import IdempotencyConflict
from cardload.observability.masking import mask_card_number
from cardload.producers.amounts import AmountError, parse_amount
from cardload.producers.enqueue import AmountLimitError
from cardload.secuconnect.money import format_money_de
from cardload.worker.sweeper import recover_stalled


def register(commands: Any) -> None:
    enqueue = commands.add_parser("enqueue", help="enqueue one card load")
    enqueue.add_argument("--card", required=True, help="16-digit card number")
    enqueue.add_argument("--amount", required=True, help="in major units, e.g. 20.00")
    enqueue.add_argument("--currency", default="EUR", help="EUR, the only one loads take")
    enqueue.add_argument(
        "--key",
        help="idempotency key: the same key never loads twice (default: a new one, printed "
        "so the command can be repeated safely)",
    )
    enqueue.add_argument("--order-id", help="source order id, carried into the result event")
    add_json_flag(enqueue)
    enqueue.set_defaults(run=_enqueue)

    job = commands.add_parser("job", help="a job's state, attempts, transaction and result")
    job.add_argument("job_id", help="the job's id (as enqueue, submit or events printed it)")
    add_json_flag(job)
    job.set_defaults(run=_job)

    jobs = commands.add_parser("jobs", help="job maintenance")
    sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")
    recover = sub.add_parser("recover", help="send again the current step of stalled jobs")
    recover.add_argument("--older-than-s", type=float, help="default: CARDLOAD_JOBS_STALL_AFTER_S")
    recover.set_defaults(run=_recover)
    purge = sub.add_parser(
        "purge",
        help="delete finished jobs older than a duration (succeeded ones expire by "
        "themselves; this finds older ones, and dead letters on request)",
    )
    purge.add_argument(
        "--older-than",
        required=True,
        type=_duration,
        metavar="D",
        help="finished (last updated) longer ago than this: 30d, 12h, 90m, 2w, 1d12h",
    )
    purge.add_argument("--dry-run", action="store_true", help="count only, delete nothing")
    purge.add_argument(
        "--include-dead-letters",
        action="store_true",
        help="dead-lettered jobs too, with their dead-letter entries (never replayable then)",
    )
    add_json_flag(purge)
    purge.set_defaults(run=_purge)


def _duration(value: str) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _enqueue(args: argparse.Namespace) -> int:
    ctx = Context.load()
    try:
        cents = parse_amount(args.amount, args.currency.upper(), ctx.settings.jobs.max_amount_cents)
        fields: dict[str, Any] = {
            "card_number": args.card.replace(" ", ""),
            "amount_cents": cents,
            "currency": args.currency.upper(),
            "source": JobSource(order_id=args.order_id, system="cli"),
        }
        # The key is made once, here: every retry and replay of this load carries it.
        fields["idempotency_key"] = args.key or f"cli:{uuid.uuid4().hex}"
        job = CardLoadJob.model_validate(fields)
        job_id = ctx.producer.enqueue(job)
    except (AmountError, AmountLimitError, IdempotencyConflict) as exc:
        print(f"cardload enqueue: {exc}", file=sys.stderr)
        return EXIT_INPUT
    new = job_id == job.job_id
    if args.json:
        emit_json({"job_id": job_id, "idempotency_key": job.idempotency_key, "new": new})
    else:
        print(
            f"{'enqueued' if new else 'already enqueued'} job {job_id} (key {job.idempotency_key})"
        )
        if not args.key:
            # A repeat without the key would be a new load: say how to repeat safely.
            print(f"to repeat this command safely, add: --key {job.idempotency_key}")
    return 0


def job_view(record: JobRecord) -> dict[str, Any]:
    job, result = record.job, record.result
    return {
        "job_id": job.job_id,
        "status": record.status.value,
        "idempotency_key": job.idempotency_key,
        "card_number": mask_card_number(job.card_number) if job.card_number else job.card_group_id,
        "amount_cents": job.amount_cents,
        "currency": job.currency,
        "transaction_id": record.transaction_id,
        "attempts": record.attempts,
        "generation": record.generation,
        "source": job.source.model_dump(exclude_none=True),
        "enqueued_at": record.enqueued_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "result": _masked_result(result) if result else None,
        "error": record.error.model_dump(exclude_none=True) if record.error else None,
        "history": [h.model_dump(mode="json", exclude_none=True) for h in record.history],
    }


def _masked_result(result: LoadResult) -> dict[str, Any]:
    view = result.model_dump(exclude={"receipt"})
    if result.card_number:
        view["card_number"] = mask_card_number(result.card_number)
    return view


def _job(args: argparse.Namespace) -> int:
    record = Context.load().store.load(args.job_id)
    if record is None:
        print(f"cardload job: no job {args.job_id}", file=sys.stderr)
        return EXIT_ATTENTION
    view = job_view(record)
    if args.json:
        emit_json(view)
        return 0
    result = record.result
    attempts = ", ".join(f"{step} {n}" for step, n in record.attempts.items())
    pairs(
        [
            ("job", view["job_id"]),
            ("status", view["status"]),
            ("key", view["idempotency_key"]),
            ("card", view["card_number"]),
            ("amount", format_money_de(record.job.amount_cents, record.job.currency)),
            ("transaction", record.transaction_id),
            ("attempts", attempts or "0"),
            (
                "balance",
                balances_text(result.cash_cents, result.bonus_cents, result.total_cents)
                if result
                else None,
            ),
            ("error", record.error.message if record.error else None),
        ]
    )
    print()
    history_table(record.history)
    return 0


def _recover(args: argparse.Namespace) -> int:
    ctx = Context.load()
    older = args.older_than_s if args.older_than_s is not None else ctx.settings.jobs.stall_after_s
    print(f"sent again: {recover_stalled(ctx.app, ctx.store, older)} jobs")
    return 0


def _purge(args: argparse.Namespace) -> int:
    ctx = Context.load()
    counts = purge_finished(
        ctx.store,
        args.older_than,
        include_dead_letters=args.include_dead_letters,
        dry_run=args.dry_run,
    )
    if args.json:
        emit_json(counts.as_dict())
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    pairs(
        [
            ("job records looked at", counts.seen),
            (f"succeeded jobs {verb}", counts.succeeded),
            (f"dead-lettered jobs {verb}", counts.dead_lettered),
            (f"dead-letter entries {verb}", counts.dead_letter_entries),
            (f"idempotency keys {verb}", counts.keys_deleted),
            ("kept: queued or running", counts.kept_unfinished),
            ("kept: dead-lettered", counts.kept_dead_lettered),
            ("kept: finished more recently", counts.kept_recent),
        ]
    )
    return 0
