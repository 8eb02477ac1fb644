"""Network allowlist: which client addresses may reach the console at all.

The client address is the connection's peer. Only when that peer is a trusted proxy is the
``X-Forwarded-For`` header believed, read from the right and skipping further trusted proxies, so a
client that forges the header itself gains nothing.

The web server under Streamlit (uvicorn) has its own, separate trust: unless ``FORWARDED_ALLOW_IPS`` is set
empty, it believes ``X-Forwarded-For`` from loopback and replaces the connection's address with the header's
before the console sees it. While that trust is on, a request whose address is among its header's entries has no
address the console can believe (``server_rewrites_forwarded``); ``run.sh`` switches that trust off.

Behind the project's own proxy (``./run.sh --processes N``: nginx in front of N app processes on loopback) every
peer is 127.0.0.1. That nginx proves itself with a per-start secret header that only it and the app processes know
(``proxy_vouches``); then the right-most ``X-Forwarded-For`` entry, which it appended, is the client it saw
(``client_behind_proxy``). Loopback is never trusted by address alone: any local program could forge the header.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Mapping

from services.core.errors import InvalidInput

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SERVER_TRUST_ENV = "FORWARDED_ALLOW_IPS"  # uvicorn's own list of peers whose X-Forwarded-For it believes
SERVER_TRUST_DEFAULT = "127.0.0.1,::1"  # uvicorn's default when the variable is unset
PROXY_SECRET_ENV = "REVIEW_CONSOLE_PROXY_SECRET"  # set by deploy/serve.sh for the app processes behind its nginx
PROXY_HEADER = "X-Console-Proxy"  # the header that nginx sets (replacing any the client sent) to that secret


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


def server_rewrites_forwarded(environ: Mapping[str, str]) -> bool:
    """True when the web server in this process (uvicorn, whose settings come from ``environ``) replaces the
    connection's address with ``X-Forwarded-For`` for some peers: ``FORWARDED_ALLOW_IPS`` unset (loopback is
    trusted) or naming any host. Never raises."""
    return any(host.strip() for host in environ.get(SERVER_TRUST_ENV, SERVER_TRUST_DEFAULT).split(","))


def _named_in(peer: str | None, forwarded_for: str) -> bool:
    """Whether ``peer`` is one of the header's entries (as uvicorn reads them: ``host``, ``v4:port``,
    ``[v6]:port``), the only addresses uvicorn could have put in place of the real peer."""
    addr = _address(peer)
    for entry in (e.strip() for e in forwarded_for.split(",")):
        host = entry[1:entry.find("]")] if entry.startswith("[") and "]" in entry else \
            entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        if host == peer or (addr is not None and _address(host) == addr):
            return True
    return False


def effective_client(*, peer: str | None, forwarded_for: str | None, trusted_proxies: Iterable[str],
                     server_rewrites: bool = False) -> str | None:
    """The client address to judge: the peer, unless the peer is a trusted proxy; then the right-most
    ``X-Forwarded-For`` entry that is not itself a trusted proxy. None when it cannot be told, which includes
    a peer named in the header while ``server_rewrites`` (the web server may have put that entry in place of
    the real peer; a peer the header does not name is the real one). Raises InvalidInput for a malformed
    trusted-proxy entry."""
    if server_rewrites and forwarded_for and _named_in(peer, forwarded_for):
        return None
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


def proxy_vouches(*, expected: str | None, presented: str | None) -> bool:
    """True when this process runs behind the project's own proxy (``expected``: its secret, from the environment)
    and the request carries that secret (compared in constant time). Never raises."""
    if not expected or presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def client_behind_proxy(*, forwarded_for: str | None, trusted_proxies: Iterable[str]) -> str | None:
    """The client of a request the project's own proxy vouched for: the right-most ``X-Forwarded-For`` entry (the
    address that proxy saw), or, when that is itself a trusted proxy (a load balancer in front), read further left
    as ``effective_client`` does. None when the header is missing or garbled. Raises InvalidInput for a malformed
    trusted-proxy entry."""
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    if not hops or _address(hops[-1]) is None:
        return None
    return effective_client(peer=hops[-1], forwarded_for=", ".join(hops[:-1]) or None, trusted_proxies=trusted_proxies)


def is_allowed(*, client: str | None, allowed_networks: Iterable[str]) -> bool:
    """True when no allowlist is set, or the client is inside one of its ranges. An unknown client is
    refused once a list is set."""
    networks = [ipaddress.ip_network(n, strict=False) for n in parse_networks(allowed_networks)]
    return not networks or _inside(_address(client), networks)
