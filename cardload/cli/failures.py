"""What a failed command says, in one or a few lines, and the code it exits with.

Exit codes (README, "The CLI"):
    0    done
    1    done, and something needs a person: invalid rows, a job or batch not found
    2    the input or the settings are wrong: nothing was done with them
    3    Redis or the broker could not be reached: run the command again when they are back
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
from typing import Final

import redis
from kombu.exceptions import BatchPublishError, OperationalError
from pydantic import ValidationError

from cardload.config import SettingsError, load_settings
from cardload.errors import MissingExtraError
from cardload.observability.masking import mask_url
from cardload.producers.batch_files import BatchFileError
from cardload.producers.enqueue import BrokerUnavailable, JobStoreUnavailable, NotReplicated

EXIT_OK: Final = 0
EXIT_ATTENTION: Final = 1
EXIT_INPUT: Final = 2
EXIT_UNREACHABLE: Final = 3
EXIT_INTERRUPTED: Final = 130

# Errors of the command's input, named by the command itself.
INPUT_ERRORS: Final = (SettingsError, MissingExtraError, BatchFileError, ValidationError, OSError)
UNREACHABLE_ERRORS: Final = (
    redis.RedisError,
    OperationalError,
    BatchPublishError,  # a pipelined batch of messages failed part way
    JobStoreUnavailable,
    BrokerUnavailable,
)

# Reasons clearer than pydantic's (which would quote a regular expression).
_REASONS: Final = {("card_number", "string_pattern_mismatch"): "must be 16 digits"}
_SUBCOMMANDS = (
    "api_keys_command",
    "batch_command",
    "dlq_command",
    "events_command",
    "jobs_command",
    "sandbox_command",
    "webhooks_command",
)


def command_name(args: argparse.Namespace) -> str:
    """``batch submit`` for ``cardload batch submit ...``."""
    words = [getattr(args, "command", None), *(getattr(args, a, None) for a in _SUBCOMMANDS)]
    return " ".join(w for w in words if w)


def validation_text(exc: ValidationError) -> str:
    """One line per field, without pydantic's links or the values given (which may be
    card numbers or secrets)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"]) or "value"
        reason = _REASONS.get((where, error["type"]), error["msg"])
        if error["type"] == "string_pattern_mismatch" and reason == error["msg"]:
            reason = "is not in the expected form"
        lines.append(f"{where}: {reason}")
    return "; ".join(lines)


def input_text(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return validation_text(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


def unreachable_text(exc: BaseException) -> str:
    """Which service, where (no password), and why."""
    if isinstance(exc, NotReplicated):  # Redis answered: it says what it could not confirm
        return str(exc)
    broker = isinstance(exc, (OperationalError, BrokerUnavailable))
    where = _service_url(broker)
    what = f"the broker ({where})" if broker else f"Redis ({where})"
    cause = exc.__cause__ if isinstance(exc, (JobStoreUnavailable, BrokerUnavailable)) else exc
    why = str(cause) if cause is not None else str(exc)
    text = f"{what} cannot be reached: {why}"
    if isinstance(exc, (JobStoreUnavailable, BrokerUnavailable)):
        text += f" ({exc})"
    return text


def _service_url(broker: bool) -> str:
    try:
        settings = load_settings()
    except SettingsError:
        return "see CARDLOAD_REDIS_URL"
    url = settings.effective_broker_url if broker else settings.redis_url
    return mask_url(url)
