"""Egress control: where an HTTP connector may connect.

Normal calls may only reach the connector's base URL host and its configured
extra hosts. A URL taken from alert content may be fetched only by a
capability declared with `fetches_untrusted_urls=True`, and then never an
address that is private, loopback, link-local, multicast, reserved or
otherwise not globally routable, unless the configuration allows that
network. The check is made on every address the name resolves to, and again
at connect time on the address actually dialled, so DNS rebinding cannot
slip past it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import httpcore
import httpx

from soc_agent.errors import EgressDeniedError

__all__ = [
    "EgressDeniedError",
    "IPAddress",
    "IPNetwork",
    "Resolver",
    "UntrustedTransport",
    "check_host_allowed",
    "check_public_address",
    "configured_host_problem",
    "resolve_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_host_allowed(url: httpx.URL, allowed: Iterable[str]) -> None:
    """Raise EgressDeniedError unless `url` is absolute http(s) to one of `allowed` hosts."""
    if url.scheme not in ("http", "https"):
        raise EgressDeniedError(f"refused to connect: scheme {url.scheme!r} is not http(s)")
    host = url.host.lower()
    if host not in {h.lower() for h in allowed}:
        raise EgressDeniedError(
            f"refused to connect to {host}: not the connector's base URL host "
            "or one of its allowed_hosts"
        )


def check_public_address(address: str, allow: Sequence[IPNetwork] = ()) -> None:
    """Raise EgressDeniedError if `address` is not globally routable and not allowed."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allow):
        return
    kind = _non_public_kind(ip)
    if kind is not None:
        raise EgressDeniedError(f"refused to connect to {ip}: {kind} address")


# Instance metadata services answer with cloud credentials to whoever asks.
_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)


def configured_host_problem(host: str, *, allow_private: bool) -> str | None:
    """Why a configured host (base URL, allowed host, identity provider) must not be dialled.

    Cloud metadata and link-local addresses never: a credential sent there is lost.
    Private ranges (RFC 1918, unique-local, shared) only when `allow_private`;
    loopback is allowed (a sidecar). Names other than the metadata services' are not
    resolved here: that is the dialler's, on every connection.
    """
    name = host.strip("[]").rstrip(".").lower()
    if name in _METADATA_NAMES:
        return f"{host} is a cloud metadata service"
    try:
        ip: IPAddress = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_loopback or ip.is_global or allow_private:
        return None
    return f"{ip} is a private or non-global address (set allow_private_network: true to use it)"


def _non_public_kind(ip: IPAddress) -> str | None:
    checks = (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("non-global", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, checks every address, then dials a checked address."""

    def __init__(self, allow: Sequence[IPNetwork], resolve: Resolver) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow = tuple(allow)
        self._resolve = resolve

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port)
        if not addresses:
            raise EgressDeniedError(f"refused to connect to {host}: it resolves to no address")
        for address in addresses:
            check_public_address(address, self._allow)
        # TLS still verifies and sends SNI for `host`: httpcore passes the origin's
        # name to start_tls, not the address we dial.
        return await self._inner.connect_tcp(
            addresses[0], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressDeniedError("refused to connect: unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class UntrustedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose every connection goes through the address check.

    Proxies from the environment are ignored (a proxy would dial for us,
    bypassing the check).
    """

    def __init__(
        self,
        *,
        verify: bool,
        limits: httpx.Limits,
        allow: Sequence[IPNetwork],
        resolve: Resolver,
    ) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits)
        ssl_context: ssl.SSLContext = httpx.create_ssl_context(verify=verify, trust_env=False)
        # httpx has no public hook for the network backend; replacing the pool it just
        # built (same settings) is the documented httpcore way to supply one.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(allow, resolve),
        )
