"""Logs with job context, card numbers masked and secrets scrubbed."""

from observability.logging import bind_job, configure_logging, get_logger
from observability.masking import mask_card_number, mask_text

__all__ = ["bind_job", "configure_logging", "get_logger", "mask_card_number", "mask_text"]
