"""No deliveries to this host or private networks unless a setting allows them."""

from __future__ import annotations

import pytest

from cardload.webhooks.addresses import AddressRefused, check_url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "http://localhost/x",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/",
    ],
)
def test_loopback_needs_its_setting(url: str) -> None:
    with pytest.raises(AddressRefused, match="ALLOW_LOOPBACK"):
        check_url(url, allow_loopback=False, allow_private=True)
    check_url(url, allow_loopback=True, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/x",
        "https://192.168.0.10/x",
        "http://172.16.5.4/x",
        "http://169.254.169.254/latest/meta-data",  # a cloud's metadata service
        "http://[fd00::1]/x",
        "http://[64:ff9b::a00:1]/x",  # NAT64 of 10.0.0.1
        "http://[2002:a9fe:a9fe::]/x",  # 6to4 of 169.254.169.254
        "http://[::a00:1]/x",  # IPv4-compatible 10.0.0.1
    ],
)
def test_private_addresses_need_their_setting(url: str) -> None:
    with pytest.raises(AddressRefused, match="ALLOW_PRIVATE"):
        check_url(url, allow_loopback=True, allow_private=False)
    check_url(url, allow_loopback=False, allow_private=True)


@pytest.mark.parametrize(
    "url", ["ftp://8.8.8.8/x", "file:///etc/passwd", "http:///x", "https://user:pw@8.8.8.8/"]
)
def test_only_plain_http_urls(url: str) -> None:
    with pytest.raises(AddressRefused):
        check_url(url, allow_loopback=True, allow_private=True)


def test_a_public_address_is_fine_and_is_what_to_connect_to() -> None:
    assert check_url("https://8.8.8.8/hooks", allow_loopback=False, allow_private=False) == (
        "8.8.8.8"
    )
    assert check_url("http://[64:ff9b::808:808]/", allow_loopback=False, allow_private=False)
