"""``cardload``: one entry point, one module per command group."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cardload._version import __version__
from cardload.cli import (
    api_cmd,
    batch_cmd,
    demo_cmd,
    dlq_cmd,
    events_cmd,
    failures,
    health_cmd,
    jobs_cmd,
    reconcile_cmd,
    sandbox_cmd,
    webhooks_cmd,
    worker_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardload",
        description="Load secucard loyalty and gift cards through secuconnect Smart Transactions.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    jobs_cmd.register(commands)
    batch_cmd.register(commands)
    dlq_cmd.register(commands)
    events_cmd.register(commands)
    worker_cmd.register(commands)
    sandbox_cmd.register(commands)
    demo_cmd.register(commands)
    api_cmd.register(commands)
    webhooks_cmd.register(commands)
    health_cmd.register(commands)
    reconcile_cmd.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code (``cli.failures`` lists them)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = "cardload"
    try:
        if argv[:1] == ["worker"]:
            # Everything after "worker" belongs to celery worker, untouched.
            return worker_cmd.run_worker(argv[1:])
        args = build_parser().parse_args(argv)
        name = f"cardload {failures.command_name(args)}"
        result: int = args.run(args)
    except failures.INPUT_ERRORS as exc:
        print(f"{name}: {failures.input_text(exc)}", file=sys.stderr)
        return failures.EXIT_INPUT
    except failures.UNREACHABLE_ERRORS as exc:
        print(f"{name}: {failures.unreachable_text(exc)}", file=sys.stderr)
        return failures.EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return failures.EXIT_INTERRUPTED
    return result


if __name__ == "__main__":
    sys.exit(main())
