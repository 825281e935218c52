"""Logs with job context, card numbers masked and secrets scrubbed."""

from cardload.observability.logging import bind_job, configure_logging, get_logger
from cardload.observability.masking import mask_card_number, mask_text

__all__ = ["bind_job", "configure_logging", "get_logger", "mask_card_number", "mask_text"]
