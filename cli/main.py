"""``cardload``: one entry point, one module per command group."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli import demo_cmd, sandbox_cmd
from config import SettingsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardload",
        description="Load secucard loyalty and gift cards through secuconnect Smart Transactions.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sandbox_cmd.register(commands)
    demo_cmd.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.run(args)
    except SettingsError as exc:
        print(f"cardload: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
