"""Network allowlist: which client addresses may reach the console at all.

The client address is the connection's peer. Only when that peer is a trusted proxy is the
``X-Forwarded-For`` header believed, read from the right and skipping further trusted proxies, so a
client that forges the header itself gains nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from services.core.errors import InvalidInput

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> list[str]:
    """Normalised CIDR ranges (a bare address is a /32 or /128). Raises InvalidInput naming a bad entry."""
    out = []
    for value in values:
        text = str(value).strip()
        if not text:
            continue
        try:
            out.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise InvalidInput(f"'{text}' is not an address or a CIDR range such as 10.0.0.0/8") from None
    return out


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.strip().split("%")[0])
    except ValueError:
        return None


def _inside(addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None, networks: list[Network]) -> bool:
    return addr is not None and any(addr.version == n.version and addr in n for n in networks)


def effective_client(*, peer: str | None, forwarded_for: str | None, trusted_proxies: Iterable[str]) -> str | None:
    """The client address to judge: the peer, unless the peer is a trusted proxy; then the right-most
    ``X-Forwarded-For`` entry that is not itself a trusted proxy. None when it cannot be told."""
    proxies = [ipaddress.ip_network(p, strict=False) for p in parse_networks(trusted_proxies)]
    addr = _address(peer)
    if addr is None or not _inside(addr, proxies) or not forwarded_for:
        return None if addr is None else str(addr)
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        hop_addr = _address(hop)
        if hop_addr is None:
            return None  # a garbled chain: trust nothing in it
        if not _inside(hop_addr, proxies):
            return str(hop_addr)
    return str(addr)


def is_allowed(*, client: str | None, allowed_networks: Iterable[str]) -> bool:
    """True when no allowlist is set, or the client is inside one of its ranges. An unknown client is
    refused once a list is set."""
    networks = [ipaddress.ip_network(n, strict=False) for n in parse_networks(allowed_networks)]
    return not networks or _inside(_address(client), networks)
