"""Read by Celery on the app's first use of its configuration (``config_from_object``),
so invalid settings are reported by the command that needs them, naming the
variable, and not as an import error of every command."""

from __future__ import annotations

from cardload.config import load_settings
from cardload.worker.settings import celery_config

globals().update(celery_config(load_settings()))
