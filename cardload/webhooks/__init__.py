"""Webhooks: result events POSTed to registered endpoints, signed as Stripe signs them.

Receivers in Python check a delivery with :func:`verify` (stdlib only underneath)."""

from cardload.webhooks.signing import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookSignatureError,
    sign,
    verify,
)

__all__ = ["EVENT_ID_HEADER", "SIGNATURE_HEADER", "WebhookSignatureError", "sign", "verify"]
