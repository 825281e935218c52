"""``cardload reconcile --since D [--until D] [--grace D] [--apply] [--out FILE.csv]``:
the API's transactions of a period joined with the job records (``cardload.reconcile``
says what each finding means). Exit 1 when something needs a person."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from cardload.cli.context import Context
from cardload.cli.failures import EXIT_UNREACHABLE
from cardload.jobs.retention import parse_duration
from cardload.pipeline.runtime import build_pipeline
from cardload.reconcile import Finding, reconcile


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "reconcile",
        help="join the API's transactions of a period with the job records; exit 1 if "
        "something needs a person",
    )
    parser.add_argument(
        "--since", required=True, help="a date/time (2026-12-01, UTC if no zone) or an age (7d)"
    )
    parser.add_argument("--until", help="the same; default: now")
    parser.add_argument(
        "--grace",
        default="1h",
        type=_duration,
        help="a created transaction younger than this is left alone (1h)",
    )
    parser.add_argument("--apply", action="store_true", help="cancel transactions left created")
    parser.add_argument("--out", help="write every finding to this CSV file")
    parser.add_argument("--json", action="store_true", help="counts and findings as JSON")
    parser.set_defaults(run=run)


def when(value: str, now: datetime) -> datetime:
    """An ISO date or date-time (UTC unless it names a zone), or an age such as ``7d``."""
    try:
        return now - timedelta(seconds=parse_duration(value))
    except ValueError:
        pass
    try:
        found = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is neither a date (2026-12-01, 2026-12-01T08:00+01:00) nor an age (7d)"
        ) from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def _duration(value: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(value))
    except ValueError as exc:  # argparse: exit 2 naming the option
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    ctx = Context.load()
    now = datetime.now(UTC)
    since = when(args.since, now)
    until = when(args.until, now) if args.until else now
    grace: timedelta = args.grace
    pipeline = build_pipeline(ctx.settings, client=ctx.redis)
    try:
        result = reconcile(
            pipeline.client, pipeline.store, since=since, until=until, grace=grace,
            apply=args.apply, now=now, retry=ctx.settings.retry,
        )  # fmt: skip
    finally:
        pipeline.leases.stop()
        pipeline.client.close()
    if args.out:
        _write_csv(args.out, result.findings)
    attention = result.needs_a_person
    if args.json:
        rows = [dataclasses.asdict(f) for f in (result.findings)]
        answer = {"counts": result.counts(), "needs_a_person": len(attention), "findings": rows}
        print(json.dumps(answer | {"incomplete": result.incomplete}))
    else:
        print(f"{since.isoformat()} .. {until.isoformat()}: {len(result.findings)} transactions")
        for kind, count in sorted(result.counts().items()):
            print(f"  {kind:<14} {count}")
        for finding in attention:
            job = f"job {finding.job_id or '-'} ({finding.job_status or '-'})"
            print(
                f"  needs a person: {finding.kind} {finding.transaction_id} "
                f"{finding.merchant_ref!r} {job}",
                file=sys.stderr,
            )
    if result.incomplete:
        # What was listed (and done) is reported above; the rest was never seen.
        print(f"cardload reconcile: incomplete: {result.incomplete}", file=sys.stderr)
        return EXIT_UNREACHABLE
    return 1 if attention else 0


def _write_csv(path: str, findings: list[Finding]) -> None:
    names = [f.name for f in dataclasses.fields(Finding)]
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=[*names, "needs_a_person"])
        writer.writeheader()
        for finding in findings:
            row = dataclasses.asdict(finding) | {"needs_a_person": finding.needs_a_person}
            writer.writerow(row)
