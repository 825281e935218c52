"""``verify``: a valid delivery, a tampered one, a stale one, a replayed one."""

from __future__ import annotations

import pytest

from cardload.webhooks import WebhookSignatureError, sign, verify

SECRET = "whsec_test"
BODY = b'{"event_id": "j1:succeeded", "type": "card_load.succeeded", "amount_cents": 2000}'


def test_a_valid_delivery_verifies() -> None:
    header = sign(BODY, SECRET, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify(BODY, header, SECRET, now=1_700_000_100) == 1_700_000_000
    assert verify(BODY.decode(), header, SECRET, now=1_700_000_100) == 1_700_000_000


@pytest.mark.parametrize(
    "body",
    [BODY.replace(b"2000", b"9000"), BODY + b" ", BODY.replace(b", ", b",")],
)
def test_a_changed_body_fails(body: bytes) -> None:
    header = sign(BODY, SECRET, timestamp=1_700_000_000)
    with pytest.raises(WebhookSignatureError, match="no signature matches"):
        verify(body, header, SECRET, now=1_700_000_000)


def test_another_secret_or_a_changed_timestamp_fails() -> None:
    header = sign(BODY, SECRET, timestamp=1_700_000_000)
    with pytest.raises(WebhookSignatureError):
        verify(BODY, header, "whsec_other", now=1_700_000_000)
    moved = header.replace("t=1700000000", "t=1700000200")  # to pass the age check
    with pytest.raises(WebhookSignatureError, match="no signature matches"):
        verify(BODY, moved, SECRET, now=1_700_000_200)


def test_a_stale_or_replayed_delivery_fails() -> None:
    header = sign(BODY, SECRET, timestamp=1_700_000_000)
    with pytest.raises(WebhookSignatureError, match="301 s old"):
        verify(BODY, header, SECRET, now=1_700_000_301)
    # Captured and sent again an hour later: refused, whatever the body.
    with pytest.raises(WebhookSignatureError, match="old"):
        verify(BODY, header, SECRET, now=1_700_003_600)
    with pytest.raises(WebhookSignatureError, match="old"):  # a clock far ahead too
        verify(BODY, header, SECRET, now=1_699_999_000)
    assert verify(BODY, header, SECRET, tolerance_s=0, now=1_800_000_000)


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=00", "t=1700000000", "nonsense"])
def test_a_malformed_header_fails(header: str) -> None:
    with pytest.raises(WebhookSignatureError):
        verify(BODY, header, SECRET, now=1_700_000_000)


def test_any_of_several_signatures_may_match() -> None:
    """While a secret is rolled, a sender may sign with the old and the new one."""
    new = sign(BODY, SECRET, timestamp=1_700_000_000)
    old = sign(BODY, "whsec_old", timestamp=1_700_000_000).split(",")[1]
    assert verify(BODY, f"{new},{old}", SECRET, now=1_700_000_000)
    assert verify(BODY, f"{new},{old}", "whsec_old", now=1_700_000_000)


ARABIC_INDIC = "\u0661\u0667" + "\u0660" * 8  # digits, but not ASCII ones


@pytest.mark.parametrize("timestamp", ["²", "1" * 5000, ARABIC_INDIC])
def test_an_odd_timestamp_is_a_signature_error(timestamp: str) -> None:
    with pytest.raises(WebhookSignatureError):
        verify(BODY, f"t={timestamp},v1=00", SECRET, now=1_700_000_000)
