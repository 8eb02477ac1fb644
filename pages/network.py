"""The client's address as the network allowlist and the audit log judge it (the connection's peer, or what
trusted proxies forwarded)."""

from __future__ import annotations

import os

import streamlit as st

from services.core.network import (
    PROXY_HEADER,
    PROXY_SECRET_ENV,
    client_behind_proxy,
    effective_client,
    proxy_vouches,
    server_rewrites_forwarded,
)


def _peer_address() -> str | None:
    """The connection's peer, loopback included (``st.context.ip_address`` reports loopback as None)."""
    try:
        from streamlit.runtime.context import _get_client_context

        context = _get_client_context()
        ip = context.remote_ip if context is not None else None
    except (ImportError, AttributeError):  # another Streamlit: its public, loopback-less address
        ip = st.context.ip_address
    return ip if isinstance(ip, str) and ip else None


def judged_client(trusted_proxies: list[str]) -> str | None:
    """The address the allowlist and the audit go by (``services.core.network.effective_client``): the peer, or
    what trusted proxies forwarded, or what the project's own nginx vouched for (``./run.sh --processes N``); None when it cannot be told (a forwarded header that the web server itself
    may have applied: see ``server_rewrites_forwarded``)."""
    headers = st.context.headers
    values = headers.get_all("X-Forwarded-For") if hasattr(headers, "get_all") else []
    peer = _peer_address()
    if peer in ("127.0.0.1", "::1") and proxy_vouches(expected=os.environ.get(PROXY_SECRET_ENV),
                                                      presented=headers.get(PROXY_HEADER)):
        return client_behind_proxy(forwarded_for=", ".join(values) if values else None,
                                   trusted_proxies=trusted_proxies)  # ./run.sh --processes N: its own nginx
    return effective_client(peer=peer, forwarded_for=", ".join(values) if values else None,
                            trusted_proxies=trusted_proxies, server_rewrites=server_rewrites_forwarded(os.environ))
