"""The network allowlist: CIDR parsing, the client behind trusted proxies only, forged headers."""

from __future__ import annotations

import pytest

from services.core.config import get_settings, set_setting
from services.core.errors import InvalidInput
from services.core.network import (
    client_behind_proxy,
    effective_client,
    is_allowed,
    parse_networks,
    proxy_vouches,
    server_rewrites_forwarded,
)


def test_ranges_are_normalised_and_bad_ones_named():
    assert parse_networks(["10.1.2.3/8", " 192.168.0.7 ", "", "fd00::/8"]) == ["10.0.0.0/8", "192.168.0.7/32", "fd00::/8"]
    with pytest.raises(InvalidInput, match="'10.0.0.300' is not an address"):
        parse_networks(["10.0.0.300"])


def test_allowlist():
    assert is_allowed(client="203.0.113.9", allowed_networks=[])  # no list: everyone
    assert is_allowed(client="10.4.5.6", allowed_networks=["10.0.0.0/8"])
    assert not is_allowed(client="203.0.113.9", allowed_networks=["10.0.0.0/8"])
    assert not is_allowed(client=None, allowed_networks=["10.0.0.0/8"])  # unknown: refused once a list is set
    assert is_allowed(client="fd00::1", allowed_networks=["10.0.0.0/8", "fd00::/8"])


def test_forwarded_header_is_believed_only_from_a_trusted_proxy():
    proxies = ["10.0.0.2"]
    # an outside client forging the header directly: its own address counts
    assert effective_client(peer="203.0.113.9", forwarded_for="10.1.1.1", trusted_proxies=proxies) == "203.0.113.9"
    # through the proxy: the right-most address that is not a trusted proxy
    assert effective_client(peer="10.0.0.2", forwarded_for="10.1.1.1", trusted_proxies=proxies) == "10.1.1.1"
    # a forged entry prepended by the client is ignored: the proxy appended the real one last
    assert effective_client(peer="10.0.0.2", forwarded_for="10.9.9.9, 203.0.113.9",
                            trusted_proxies=proxies) == "203.0.113.9"
    assert effective_client(peer="10.0.0.2", forwarded_for="garbage", trusted_proxies=proxies) is None
    assert effective_client(peer="10.0.0.2", forwarded_for=None, trusted_proxies=proxies) == "10.0.0.2"
    assert effective_client(peer=None, forwarded_for="10.1.1.1", trusted_proxies=proxies) is None


def test_a_header_the_web_server_may_have_applied_gives_no_address():
    """uvicorn believes X-Forwarded-For from loopback unless FORWARDED_ALLOW_IPS is set empty, and puts the
    header's address in place of the peer's: the console sees 10.9.8.7 as the peer of a loopback client that
    forged it. While that trust is on, a peer the header names has no address to believe."""
    assert server_rewrites_forwarded({})  # uvicorn's default: 127.0.0.1,::1
    assert server_rewrites_forwarded({"FORWARDED_ALLOW_IPS": "*"})
    assert not server_rewrites_forwarded({"FORWARDED_ALLOW_IPS": ""})  # what run.sh sets
    assert not server_rewrites_forwarded({"FORWARDED_ALLOW_IPS": " , "})
    forged = effective_client(peer="10.9.8.7", forwarded_for="10.9.8.7", trusted_proxies=[], server_rewrites=True)
    assert forged is None
    assert not is_allowed(client=forged, allowed_networks=["10.9.8.0/24"])
    for header in ("10.9.8.7:5555", "203.0.113.9, 10.9.8.7", "[fd00::7]:80"):
        peer = "fd00::7" if "fd00" in header else "10.9.8.7"
        assert effective_client(peer=peer, forwarded_for=header, trusted_proxies=[], server_rewrites=True) is None
    # a peer the header does not name is the real one (uvicorn only ever puts an entry of the header there):
    # a proxy on another host, started without run.sh, still works
    assert effective_client(peer="10.0.0.2", forwarded_for="203.0.113.9", trusted_proxies=["10.0.0.2"],
                            server_rewrites=True) == "203.0.113.9"
    assert effective_client(peer="10.9.8.7", forwarded_for="", trusted_proxies=[], server_rewrites=True) == "10.9.8.7"
    # no header: the server replaced nothing
    assert effective_client(peer="10.9.8.7", forwarded_for=None, trusted_proxies=[], server_rewrites=True) == "10.9.8.7"
    # the server's trust off: the console's own list decides, loopback proxies included
    assert effective_client(peer="127.0.0.1", forwarded_for="10.9.8.7", trusted_proxies=[]) == "127.0.0.1"
    assert effective_client(peer="127.0.0.1", forwarded_for="10.9.8.7", trusted_proxies=["127.0.0.1"]) == "10.9.8.7"


def test_the_projects_own_proxy_vouches_with_its_secret_only():
    assert proxy_vouches(expected="s" * 43, presented="s" * 43)
    assert not proxy_vouches(expected="s" * 43, presented="s" * 42 + "t")
    assert not proxy_vouches(expected="s" * 43, presented=None)
    assert not proxy_vouches(expected=None, presented="")  # not behind it: no header makes a loopback peer a proxy
    assert not proxy_vouches(expected="", presented="")


def test_behind_the_projects_own_proxy_its_appended_entry_is_the_client():
    """nginx appends the address it saw ($proxy_add_x_forwarded_for): the right-most entry, whatever the client
    wrote to its left; further left only through proxies the admin trusts (a load balancer in front)."""
    assert client_behind_proxy(forwarded_for="203.0.113.9", trusted_proxies=[]) == "203.0.113.9"
    assert client_behind_proxy(forwarded_for="10.9.8.7, 203.0.113.9", trusted_proxies=[]) == "203.0.113.9"
    assert client_behind_proxy(forwarded_for="127.0.0.1", trusted_proxies=[]) == "127.0.0.1"  # a local browser
    assert client_behind_proxy(forwarded_for="10.9.8.7, 127.0.0.1", trusted_proxies=[]) == "127.0.0.1"
    assert client_behind_proxy(forwarded_for="198.51.100.4, 10.0.0.2", trusted_proxies=["10.0.0.2"]) == "198.51.100.4"
    assert client_behind_proxy(forwarded_for=None, trusted_proxies=[]) is None
    assert client_behind_proxy(forwarded_for="garbage", trusted_proxies=[]) is None


def test_settings_validate_ranges(db):
    set_setting(db, key="allowed_networks", value=["10.0.0.0/8"], actor="admin")
    assert get_settings(db)["allowed_networks"] == ["10.0.0.0/8"]
    with pytest.raises(InvalidInput):
        set_setting(db, key="trusted_proxies", value=["not an ip"], actor="admin")
