"""The JSON Schema of result events, generated from the models and kept in the repo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cardload.events.model import RESULT_EVENT, SCHEMA_VERSION

SCHEMA_FILE = Path(__file__).with_name("schema.json")


def event_schema() -> dict[str, Any]:
    schema = RESULT_EVENT.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"cardload result event, schema version {SCHEMA_VERSION}"
    return schema


def render_schema() -> str:
    return json.dumps(event_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(path: Path = SCHEMA_FILE) -> None:
    path.write_text(render_schema())
