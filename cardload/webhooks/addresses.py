"""Where a webhook may be sent: not to this host or its private network unless the
settings allow it, so an endpoint URL cannot make the workers probe what only they
can reach (Redis, the cloud's metadata service, an admin page)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from cardload.errors import CardloadError


class AddressRefused(CardloadError, ValueError):
    """The URL is not http(s), or its host resolves to an address not allowed."""


def check_url(url: str, *, allow_loopback: bool, allow_private: bool) -> None:
    """Refuse ``url`` unless every address its host resolves to is allowed.

    :raises AddressRefused: with the reason (never a fetched page: nothing is fetched).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused(f"{url!r}: an http:// or https:// URL with a host is needed")
    if parts.username or parts.password:
        raise AddressRefused("a webhook URL must not hold a user name or password")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 0, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"{parts.hostname}: does not resolve ({exc})") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address.is_loopback:
            if not allow_loopback:
                raise AddressRefused(
                    f"{parts.hostname} is this host ({address}): set "
                    "CARDLOAD_WEBHOOKS_ALLOW_LOOPBACK=true to allow it"
                )
        elif not address.is_global and not allow_private:  # private, link-local, ...
            raise AddressRefused(
                f"{parts.hostname} is a private address ({address}): set "
                "CARDLOAD_WEBHOOKS_ALLOW_PRIVATE=true to allow it"
            )
