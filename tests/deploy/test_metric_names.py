"""The alert rules and the Grafana dashboard in ``deploy/`` use only metric names that
cardload serves (``observability.metrics.NAMES``, with Prometheus's ``_bucket``,
``_count`` and ``_sum`` of its histograms), and every alert rule parses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cardload.observability.metrics import NAMES

DEPLOY = Path(__file__).parents[2] / "deploy"
_NAME = re.compile(r"\bcardload_[a-z0-9_]+")
_HISTOGRAM_PARTS = ("_bucket", "_count", "_sum")


def _served(name: str) -> bool:
    return name in NAMES or any(
        name.endswith(part) and name.removesuffix(part) in NAMES for part in _HISTOGRAM_PARTS
    )


def _alert_exprs() -> list[str]:
    yaml = pytest.importorskip("yaml")
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    board = json.loads((DEPLOY / "grafana" / "cardload.json").read_text())
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def test_every_alert_and_panel_uses_served_names() -> None:
    exprs = _alert_exprs() + _dashboard_exprs()
    used = {name for expr in exprs for name in _NAME.findall(expr)}
    assert used and sorted(name for name in used if not _served(name)) == []


def test_the_alerts_cover_what_the_runbook_names() -> None:
    yaml = pytest.importorskip("yaml")
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {
        "CardloadDeadLettersRising",
        "CardloadNoProgress",
        "CardloadBreakerOpen",
        "CardloadApiErrorRate",
    } <= names
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]
