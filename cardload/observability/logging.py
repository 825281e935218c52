"""structlog set-up: JSON for machines, a readable console for people.

Every line passes through :func:`_scrub`, so a card number or a token that slips
into a log call is masked there, not only where we remembered to mask it. Tracebacks
are rendered to text *before* the scrubber runs, so an exception's message is masked
too; our own generated ids are exempt (a random hex id may hold a long digit run).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

from cardload.observability.masking import REDACTED, SECRET_KEYS, mask_text

# Ids cardload or the API generate: never card numbers, kept readable.
_ID_KEYS = frozenset({"job_id", "transaction_id", "event_id", "support_id"})


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {
            k: REDACTED if str(k).lower() in SECRET_KEYS else _clean(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _scrub(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    cleaned: MutableMapping[str, Any] = {}
    for key, value in event_dict.items():
        if key in _ID_KEYS:
            cleaned[key] = value
        else:
            cleaned[key] = REDACTED if key.lower() in SECRET_KEYS else _clean(value)
    return dict(cleaned)


def configure_logging(fmt: str = "json", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library (Celery, kombu) through one renderer."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,  # text first, so the scrubber sees it
        _scrub,
    ]
    structlog.configure(
        # Drop lines below the level before any processor runs: logging must stay cheap.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; ours say more, with the job bound.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


def bind_job(
    job_id: str,
    *,
    transaction_id: str | None = None,
    attempt: int | None = None,
    step: str | None = None,
) -> None:
    """Bind the job's ids to every log line of the current task."""
    structlog.contextvars.clear_contextvars()
    values = {"job_id": job_id, "transaction_id": transaction_id, "attempt": attempt, "step": step}
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})
