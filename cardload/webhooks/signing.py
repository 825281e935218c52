"""Signing a webhook delivery, and verifying one: Stripe's scheme.

``Cardload-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``,
keyed with the endpoint's secret. The timestamp is signed with the body, so a
delivery captured and sent again later fails :func:`verify` once it is older than the
tolerance; within it, the ``Cardload-Event-Id`` header names the event, and a receiver
drops an id it has processed (delivery is at least once)."""

from __future__ import annotations

import hashlib
import hmac
import time

from cardload.errors import CardloadError

SIGNATURE_HEADER = "Cardload-Signature"
EVENT_ID_HEADER = "Cardload-Event-Id"
EVENT_TYPE_HEADER = "Cardload-Event-Type"


class WebhookSignatureError(CardloadError, ValueError):
    """The delivery is not signed with the secret, was changed, or is too old."""


def _mac(secret: str, timestamp: int, payload: bytes) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Cardload-Signature`` header for ``payload`` (the raw body)."""
    at = int(time.time()) if timestamp is None else timestamp
    return f"t={at},v1={_mac(secret, at, payload)}"


def verify(
    payload: bytes | str,
    header: str,
    secret: str,
    tolerance_s: int = 300,
    *,
    now: float | None = None,
) -> int:
    """Check a delivery as it arrived; returns its timestamp.

    :param payload: the raw body, byte for byte (not re-serialized JSON).
    :param header: the ``Cardload-Signature`` header.
    :param secret: the endpoint's secret (``whsec_...``).
    :param tolerance_s: how old a delivery may be; 0 checks no age.
    :raises WebhookSignatureError: malformed, not signed with ``secret``, or too old.
    """
    raw = payload.encode() if isinstance(payload, str) else payload
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookSignatureError("the signature header has no timestamp or no v1 signature")
    expected = _mac(secret, timestamp, raw)
    # Every v1 compared (the sender may sign with an old and a new secret while they roll).
    if not any(hmac.compare_digest(expected, given) for given in signatures):
        raise WebhookSignatureError("no signature matches: a wrong secret, or a changed body")
    current = time.time() if now is None else now
    if tolerance_s and abs(current - timestamp) > tolerance_s:
        raise WebhookSignatureError(
            f"the delivery is {int(current - timestamp)} s old, more than {tolerance_s} s"
        )
    return timestamp
