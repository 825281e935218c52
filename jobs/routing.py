"""Which Celery task runs each step: the one contract producers and workers share."""

from __future__ import annotations

from typing import Literal

Step = Literal["create", "start", "publish"]

TASK_NAMES: dict[Step, str] = {
    "create": "cardload.create",
    "start": "cardload.start",
    "publish": "cardload.publish",
}
