"""The dependency direction (README, Layout): each package imports only packages below
it, so a newcomer can read the layers bottom up and a producer needs no pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

import cardload

# Lower ranks are imported by higher ones, never the other way round; equal ranks do
# not import each other.
RANK = {
    "errors": 0,
    "_version": 0,
    "config": 1,
    "observability": 2,
    "secuconnect": 3,
    "jobs": 4,
    "sandbox": 4,  # the simulator: only the API's facts from secuconnect
    "events": 5,
    "deadletters": 5,
    "apikeys": 5,
    "flowcontrol": 5,  # the API's shared breaker and rate limit: Redis, no job
    "reconcile": 5,  # the API's transactions joined with the job records: reads both
    "pipeline": 6,
    "webhooks": 6,  # delivery of result events: reads the stream, never a job
    "tasks": 7,
    "worker": 8,
    "producers": 9,
    "api": 10,  # the HTTP API: a producer over HTTP
    "cli": 11,
    "__init__": 11,
}
# Producers, over HTTP too, need only the models and the app: never a step's code.
FORBIDDEN = {"producers": {"pipeline", "tasks"}, "api": {"pipeline", "tasks"}}


def _imports() -> dict[tuple[str, str], str]:
    """(importing package, imported package) -> one file where it happens."""
    root = Path(cardload.__file__).parent
    found: dict[tuple[str, str], str] = {}
    for path in root.rglob("*.py"):
        package = path.relative_to(root).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module]
                if isinstance(node, ast.ImportFrom) and node.module
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                parts = name.split(".")
                if parts[0] == "cardload" and len(parts) > 1 and parts[1] != package:
                    found.setdefault((package, parts[1]), str(path.relative_to(root)))
    return found


def test_every_package_has_a_rank() -> None:
    root = Path(cardload.__file__).parent
    packages = {p.name.removesuffix(".py") for p in root.iterdir() if p.suffix == ".py"}
    packages |= {p.name for p in root.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(RANK)


def test_imports_point_down_only() -> None:
    wrong = [
        f"{where}: {importer} -> {imported}"
        for (importer, imported), where in _imports().items()
        if RANK[imported] >= RANK[importer] or imported in FORBIDDEN.get(importer, set())
    ]
    assert wrong == []
