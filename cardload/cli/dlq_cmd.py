"""``cardload dlq list | show ID | replay ID|--all | purge ID|--all``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cardload.cli.context import Context
from cardload.cli.failures import EXIT_ATTENTION, EXIT_OK
from cardload.cli.output import add_json_flag, emit_json, history_table, pairs, table
from cardload.deadletters.store import DeadLetter
from cardload.observability.masking import mask_card_number
from cardload.producers.replay import replay_dead_letters


def register(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="dead-lettered jobs")
    sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    listing = sub.add_parser("list", help="dead-lettered jobs, oldest first")
    add_json_flag(listing)
    listing.set_defaults(run=_list)
    show = sub.add_parser("show", help="one dead letter with its error and history")
    show.add_argument("job_id", help="the dead-lettered job")
    add_json_flag(show)
    show.set_defaults(run=_show)
    for name, run, help_text in (
        ("replay", _replay, "enqueue again with the same key and transaction (never loads twice)"),
        ("purge", _purge, "delete the entry (the job record stays, dead-lettered)"),
    ):
        command = sub.add_parser(name, help=help_text)
        target = command.add_mutually_exclusive_group(required=True)
        target.add_argument("job_id", nargs="?", help="one dead-lettered job")
        target.add_argument("--all", action="store_true", help="every dead letter")
        add_json_flag(command)
        command.set_defaults(run=run)


def _view(letter: DeadLetter) -> dict[str, Any]:
    job = letter.job
    return {
        "job_id": job.job_id,
        "dead_lettered_at": letter.dead_lettered_at.isoformat(timespec="seconds"),
        "card_number": mask_card_number(job.card_number) if job.card_number else job.card_group_id,
        "amount_cents": job.amount_cents,
        "transaction_id": letter.transaction_id,
        "error_kind": letter.error.kind,
        "error": letter.error.message,
        "api_error": letter.error.api_error,
        "api_error_details": letter.error.api_error_details,
        "support_id": letter.error.support_id,
        "load_uncertain": letter.load_uncertain,
        "attempts": letter.attempts,
        "idempotency_key": job.idempotency_key,
    }


def _list(args: argparse.Namespace) -> int:
    views = [_view(letter) for letter in Context.load().dead_letters.entries(count=10_000)]
    if args.json:
        emit_json(views)
    else:
        table(
            views,
            [
                "job_id",
                "dead_lettered_at",
                "card_number",
                "amount_cents",
                "error_kind",
                "api_error",
                "error",
                "load_uncertain",
            ],
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    letter = Context.load().dead_letters.get(args.job_id)
    if letter is None:
        print(f"cardload dlq show: no dead letter for job {args.job_id}", file=sys.stderr)
        return EXIT_ATTENTION
    view = _view(letter) | {
        "history": [h.model_dump(mode="json", exclude_none=True) for h in letter.history]
    }
    if args.json:
        emit_json(view)
        return 0
    pairs([(k, v) for k, v in view.items() if k != "history"])
    print()
    history_table(letter.history)
    return 0


def _targets(ctx: Context, args: argparse.Namespace) -> list[str]:
    return ctx.dead_letters.ids() if args.all else [args.job_id]


def _replay(args: argparse.Namespace) -> int:
    ctx = Context.load()
    replayed = replay_dead_letters(ctx.producer, _targets(ctx, args))
    missing = [] if args.all else [j for j in _targets(ctx, args) if j not in replayed]
    if args.json:
        emit_json({"replayed": replayed, "not_found": missing})
    else:
        print(
            f"replayed {len(replayed)} job(s)"
            + (f"; not in the dead-letter store: {', '.join(missing)}" if missing else "")
        )
    return EXIT_ATTENTION if missing else EXIT_OK


def _purge(args: argparse.Namespace) -> int:
    ctx = Context.load()
    purged = [job_id for job_id in _targets(ctx, args) if ctx.dead_letters.purge(job_id)]
    if args.json:
        emit_json({"purged": purged})
    else:
        print(f"purged {len(purged)} dead letter(s)")
    return 0 if purged or args.all else 1
