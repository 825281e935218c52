"""Output for people (aligned tables) and machines (``--json``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from cardload.jobs.model import HistoryEntry
from cardload.secuconnect.money import format_money_de


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print JSON for machines instead of a table"
    )


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [
        [str(row.get(c, "") if row.get(c) is not None else "") for c in columns] for row in rows
    ]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def pairs(items: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in items)
    for key, value in items:
        print(f"{key.ljust(width)}  {value if value is not None else '-'}")


def history_table(history: Sequence[HistoryEntry]) -> None:
    rows = [
        {
            "at": h.at.isoformat(timespec="seconds"),
            "status": h.status.value,
            "step": h.step,
            "attempt": h.attempt,
            "note": h.note,
            "error": h.error.message if h.error else None,
        }
        for h in history
    ]
    table(rows, ["at", "status", "step", "attempt", "note", "error"])


def balances_text(cash_cents: int | None, bonus_cents: int | None, total_cents: int | None) -> str:
    if cash_cents is None or bonus_cents is None or total_cents is None:
        return "unknown (the API's answer carried no balances)"
    cash, bonus, total = (format_money_de(c) for c in (cash_cents, bonus_cents, total_cents))
    return f"cash {cash}, bonus {bonus}, total {total}"


class Progress:
    """A plain progress bar on stderr (only when stderr is a terminal, or forced)."""

    def __init__(self, label: str, *, enabled: bool | None = None) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total == 0:
            return
        width = 30
        filled = width * done // total
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
