"""Receipt lines as the API returns them, and a plain-text rendering for people.

Four line types are documented (separator, name-value, textline, space); any other
type is kept as :class:`OtherLine` so a new type never breaks a finished job.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, TypeAdapter

KNOWN_DECORATIONS = ("important", "align-left", "align-center", "align-right")


class _Line(BaseModel):
    model_config = ConfigDict(extra="allow")


class SeparatorValue(_Line):
    caption: str = ""


class NameValueValue(_Line):
    name: str
    value: str
    decoration: list[str] = []


class TextValue(_Line):
    text: str
    decoration: list[str] = []


class SeparatorLine(_Line):
    type: Literal["separator"] = "separator"
    value: SeparatorValue


class NameValueLine(_Line):
    type: Literal["name-value"] = "name-value"
    value: NameValueValue


class TextLine(_Line):
    type: Literal["textline"] = "textline"
    value: TextValue


class SpaceLine(_Line):
    type: Literal["space"] = "space"


class OtherLine(_Line):
    type: str
    value: Any = None


def _line_tag(raw: Any) -> str:
    kind = raw.get("type") if isinstance(raw, dict) else getattr(raw, "type", None)
    return kind if kind in ("separator", "name-value", "textline", "space") else "other"


ReceiptLine = Annotated[
    Annotated[SeparatorLine, Tag("separator")]
    | Annotated[NameValueLine, Tag("name-value")]
    | Annotated[TextLine, Tag("textline")]
    | Annotated[SpaceLine, Tag("space")]
    | Annotated[OtherLine, Tag("other")],
    Discriminator(_line_tag),
]
# A receipt's lines parsed or dumped in one call (not a model call per line).
RECEIPT_LINES: TypeAdapter[list[ReceiptLine]] = TypeAdapter(list[ReceiptLine])


def _align(text: str, decoration: list[str], width: int) -> str:
    if "align-center" in decoration:
        return text.center(width).rstrip()
    # An important line (an amount) stands out on the right, as on a terminal's slip.
    if "align-right" in decoration or (
        "important" in decoration and "align-left" not in decoration
    ):
        return text.rjust(width)
    return text


def render_line(line: Any, width: int = 40) -> str:
    """One receipt line as plain text, ``width`` characters at most."""
    if isinstance(line, SeparatorLine):
        caption = f" {line.value.caption} " if line.value.caption else ""
        return caption.center(width, "-")
    if isinstance(line, NameValueLine):
        name = line.value.name.rstrip()
        gap = max(1, width - len(name) - len(line.value.value))
        return name + " " * gap + line.value.value
    if isinstance(line, TextLine):
        return _align(line.value.text, line.value.decoration, width)
    if isinstance(line, SpaceLine):
        return ""
    return str(getattr(line, "value", "") or "")


def render_receipt(lines: list[Any], width: int = 40) -> str:
    return "\n".join(render_line(line, width) for line in lines)
