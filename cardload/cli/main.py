"""``cardload``: one entry point, one module per command group."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cardload.cli import batch_cmd, demo_cmd, dlq_cmd, events_cmd, jobs_cmd, sandbox_cmd, worker_cmd
from cardload.config import SettingsError
from cardload.errors import MissingExtraError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardload",
        description="Load secucard loyalty and gift cards through secuconnect Smart Transactions.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    jobs_cmd.register(commands)
    batch_cmd.register(commands)
    dlq_cmd.register(commands)
    events_cmd.register(commands)
    worker_cmd.register(commands)
    sandbox_cmd.register(commands)
    demo_cmd.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["worker"]:
            # Everything after "worker" belongs to celery worker, untouched.
            return worker_cmd.run_worker(argv[1:])
        args = build_parser().parse_args(argv)
        result: int = args.run(args)
    except (SettingsError, MissingExtraError) as exc:
        print(f"cardload: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
