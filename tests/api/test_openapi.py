"""The OpenAPI document: served at /openapi.json, kept in the repository as
openapi.json (regenerate: ``cardload api --openapi > openapi.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.conftest import Api

KEPT = Path(__file__).parents[2] / "openapi.json"


def test_the_served_document_is_the_kept_one(api: Api) -> None:
    served = api.http.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(KEPT.read_text()), (
        "the API changed: regenerate with `cardload api --openapi > openapi.json`"
    )


def test_every_route_documents_its_problems_and_needs_a_key() -> None:
    document = json.loads(KEPT.read_text())
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if path in ("/healthz", "/readyz"):
                assert "security" not in operation
                continue
            assert operation["security"] == [{"HTTPBearer": []}], (method, path)
            assert "401" in operation["responses"] and "403" in operation["responses"]
            problem = operation["responses"]["401"]["content"]
            assert "application/problem+json" in problem, (method, path)
