"""Where a webhook may be sent: not to this host or its private network unless the
settings allow it, so an endpoint URL cannot make the workers probe what only they
can reach (Redis, the cloud's metadata service, an admin page).

:func:`check_url` resolves the host once and answers the address to connect to: the
delivery connects to that address (the name kept for ``Host`` and TLS), so a name
that resolves elsewhere a moment later (DNS rebinding) changes nothing."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from cardload.errors import CardloadError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64), judged by it.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


class AddressRefused(CardloadError, ValueError):
    """The URL is not http(s), or its host resolves to an address not allowed."""


def _judged(address: IPAddress) -> IPAddress:
    """The address that decides: an IPv4 address an IPv6 one carries, else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return address.ipv4_mapped
        if address.sixtofour:
            return address.sixtofour
        if any(address in net for net in _NAT64) or (
            address in _V4_COMPATIBLE and int(address) > 1
        ):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def check_url(url: str, *, allow_loopback: bool, allow_private: bool) -> str:
    """The address to connect to for ``url``, if every address its host resolves to
    is allowed.

    :raises AddressRefused: with the reason (nothing is fetched)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused(f"{url[:100]!r}: an http:// or https:// URL with a host is needed")
    if parts.username or parts.password:
        raise AddressRefused("a webhook URL must not hold a user name or password")
    if len(url) > 2048:
        raise AddressRefused("a webhook URL may be at most 2048 characters long")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 0, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise AddressRefused(f"{parts.hostname}: does not resolve ({exc})") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        judged = _judged(address)
        if judged.is_loopback or judged.is_unspecified:  # 0.0.0.0 and :: reach this host
            if not allow_loopback:
                raise AddressRefused(
                    f"{parts.hostname} is this host ({address}): set "
                    "CARDLOAD_WEBHOOKS_ALLOW_LOOPBACK=true to allow it"
                )
        elif not judged.is_global and not allow_private:  # private, link-local, ...
            raise AddressRefused(
                f"{parts.hostname} is a private address ({address}): set "
                "CARDLOAD_WEBHOOKS_ALLOW_PRIVATE=true to allow it"
            )
    return str(addresses[0])
