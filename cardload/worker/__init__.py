"""The Celery app: ``celery -A cardload.worker worker`` or ``cardload worker``.

``cardload.worker.app`` (or ``.celery``) is the app configured from the environment,
made on first access; importing this package makes nothing.
"""

from __future__ import annotations

from typing import Any

from cardload.worker.application import create_app, default_app

__all__ = ["create_app", "default_app"]


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):  # what ``celery -A cardload.worker`` looks for
        return default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
