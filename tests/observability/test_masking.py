"""Masking beyond card numbers (those are in test_logging): URLs with passwords."""

from __future__ import annotations

import pytest

from cardload.observability.masking import mask_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "redis://:**@127.0.0.1:6379/0"),
        ("amqp://guest:p%2Fw@mq:5672//", "amqp://guest:**@mq:5672//"),
        ("redis://:6390/aBcSECRET@127.0.0.1:6491/0", "redis://:**@127.0.0.1:6491/0"),
        ("amqp://u:pa#ss@h//", "amqp://u:**@h//"),
        ("redis://onlyuser@h/0", "redis://**@h/0"),
        ("redis://h:6379/0?password=SECRET&db=1", "redis://h:6379/0?password=**&db=1"),
        ("unix:///run/redis.sock?db=0", "unix:///run/redis.sock?db=0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_mask_url_drops_the_password_whatever_it_holds(url: str, shown: str) -> None:
    assert mask_url(url) == shown
