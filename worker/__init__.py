"""The Celery app: ``celery -A worker worker`` or ``cardload worker``."""

from worker.app import app

celery = app

__all__ = ["app", "celery"]
