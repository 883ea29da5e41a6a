"""Which addresses an untrusted-URL fetch may reach, and which hosts a normal call may."""

from __future__ import annotations

import ipaddress

import httpx
import pytest
from soc_agent_connectors._http_guard import (
    EgressDeniedError,
    check_host_allowed,
    check_public_address,
)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.10", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-global"),  # carrier-grade NAT
    ],
)
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    with pytest.raises(EgressDeniedError, match=f": {kind} address"):
        check_public_address(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_pass(address: str) -> None:
    check_public_address(address)


def test_configured_networks_are_allowed() -> None:
    check_public_address("127.0.0.1", [ipaddress.ip_network("127.0.0.0/8")])
    with pytest.raises(EgressDeniedError):
        check_public_address("10.0.0.1", [ipaddress.ip_network("127.0.0.0/8")])


def test_host_allow_list() -> None:
    allowed = {"www.virustotal.com", "login.example.com"}
    check_host_allowed(httpx.URL("https://WWW.VirusTotal.com/api/v3/x"), allowed)
    for url in (
        "https://evil.example/x",
        "https://www.virustotal.com.evil.example/",
        "ftp://www.virustotal.com/",
    ):
        with pytest.raises(EgressDeniedError):
            check_host_allowed(httpx.URL(url), allowed)
