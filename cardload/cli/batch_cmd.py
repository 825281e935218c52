"""``cardload batch submit | status | report``."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from cardload.cli.context import Context
from cardload.cli.failures import EXIT_ATTENTION, EXIT_INPUT, EXIT_OK
from cardload.cli.output import Progress, add_json_flag, emit_json, pairs, table
from cardload.producers.batch import BatchFileError, submit_batch
from cardload.producers.batch_files import TEMPLATES
from cardload.producers.batch_report import REPORT_COLUMNS, UnknownBatch, batch_report, batch_status


def register(commands: Any) -> None:
    batch = commands.add_parser("batch", help="batch files of card loads")
    sub = batch.add_subparsers(dest="batch_command", required=True, metavar="COMMAND")
    submit = sub.add_parser("submit", help="enqueue every valid row of a CSV or JSON Lines file")
    submit.add_argument(
        "file", type=Path, help="CSV (',' or ';' separated, English or German headers) or .jsonl"
    )
    submit.add_argument(
        "--name",
        help="the batch's name, one per batch (payroll-2026-11): keys rows that have no "
        "reference, and is the batch id",
    )
    add_json_flag(submit)
    submit.set_defaults(run=_submit)
    status = sub.add_parser("status", help="counts of the batch's jobs by status")
    status.add_argument("batch_id", help="the batch's id (its --name, or what submit printed)")
    add_json_flag(status)
    status.set_defaults(run=_status)
    report = sub.add_parser(
        "report", help="one CSV line per row: outcome, transaction, balance, error"
    )
    report.add_argument("batch_id", help="the batch's id (its --name, or what submit printed)")
    report.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    report.add_argument("--unmasked", action="store_true", help="full card numbers in the report")
    report.set_defaults(run=_report)
    template = sub.add_parser("template", help="print an empty batch file to fill in")
    template.add_argument(
        "--dialect",
        choices=sorted(TEMPLATES),
        default="en",
        help="en: comma separated, English headers, 12.50; "
        "de: semicolon separated, German headers, 12,50",
    )
    template.set_defaults(run=_template)


def _submit(args: argparse.Namespace) -> int:
    ctx = Context.load()
    try:
        result = submit_batch(
            ctx.producer, args.file, Progress(f"{args.file.name}: enqueueing"), name=args.name
        )
    except BatchFileError as exc:
        print(f"cardload batch submit: {args.file}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    invalid = [{"row": e.row, "field": e.field, "reason": e.reason} for e in result.invalid]
    if args.json:
        emit_json(
            {
                "batch_id": result.batch_id,
                "read_as": result.read_as,
                "rows": result.rows,
                "enqueued": result.enqueued,
                "already_enqueued": result.already_known,
                "invalid": invalid,
            }
        )
    else:
        pairs(
            [
                ("batch", result.batch_id),
                ("read as", result.read_as),
                ("rows", result.rows),
                ("enqueued", result.enqueued),
                ("already enqueued", result.already_known),
                ("invalid", len(invalid)),
            ]
        )
        if invalid:
            print("\ninvalid rows (not enqueued):")
            table(invalid, ["row", "field", "reason"])
    return EXIT_ATTENTION if invalid else EXIT_OK


def _template(args: argparse.Namespace) -> int:
    sys.stdout.write(TEMPLATES[args.dialect])
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        status = batch_status(Context.load().store, args.batch_id)
    except UnknownBatch as exc:
        print(f"cardload batch status: {exc}", file=sys.stderr)
        return EXIT_ATTENTION
    if args.json:
        view = {"batch_id": status.batch_id, "file": status.file, "rows": status.rows}
        emit_json(
            view
            | {
                "invalid": status.invalid,
                "by_status": status.by_status,
                "finished": status.finished,
            }
        )
        return 0
    pairs(
        [
            ("batch", status.batch_id),
            ("file", status.file),
            ("rows", status.rows),
            ("invalid", status.invalid),
            *sorted(status.by_status.items()),
            ("finished", "yes" if status.finished else "no"),
        ]
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    try:
        lines = batch_report(Context.load().store, args.batch_id, mask=not args.unmasked)
    except UnknownBatch as exc:
        print(f"cardload batch report: {exc}", file=sys.stderr)
        return EXIT_ATTENTION
    with args.out.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(lines)
    print(f"{len(lines)} rows written to {args.out}")
    return 0
