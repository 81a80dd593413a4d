"""Where a webhook may be sent: URL rules, and the address check made at send time.

An endpoint URL is ``https://`` (``http://`` only with ``[webhooks] allow_http``), with a
host, without credentials. Its host is resolved when a batch is sent and every address is
checked: only public addresses, or addresses in ``[webhooks] allow_networks``, are used —
private, loopback, link-local (cloud metadata), shared, multicast and reserved ranges are
refused — and the connection goes to the checked address itself, so a name that resolves
differently a moment later (DNS rebinding) cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Target", "UrlRefused", "address_allowed", "parse_url", "resolve"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class UrlRefused(ValueError):
    """A URL, or the address it resolves to, that webhooks may not be sent to."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    """Path and query, as sent on the request line."""

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        default = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str, *, allow_http: bool) -> Target:
    """The parts of an endpoint URL, or :class:`UrlRefused` saying what is wrong."""
    if len(url) > 2048:
        raise UrlRefused("the URL is longer than 2048 characters")
    if any(c in url for c in "\r\n\t ") or not url.isprintable():
        raise UrlRefused("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"the URL does not parse: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UrlRefused("only https:// URLs can receive webhooks")
    if scheme == "http" and not allow_http:
        raise UrlRefused("only https:// URLs can receive webhooks ([webhooks] allow_http is off)")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("the URL may not contain credentials (user:password@)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlRefused("the URL has no host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, host, port or (443 if scheme == "https" else 80), path)


def networks(items: Sequence[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(item, strict=False) for item in items]


def address_allowed(address: IPAddress, allowed: Sequence[IPNetwork]) -> bool:
    """Public addresses, and those of the allowed networks."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in net for net in allowed):
        return True
    return address.is_global and not address.is_multicast


def literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve(target: Target, allowed: Sequence[IPNetwork]) -> str:
    """An address of the target's host that may be used; :class:`UrlRefused` when it
    resolves only to refused addresses (or not at all)."""
    ip = literal(target.host)
    if ip is not None:
        if not address_allowed(ip, allowed):
            raise UrlRefused(f"{ip} is not a public address (see [webhooks] allow_networks)")
        return str(ip)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise UrlRefused(f"{target.host} does not resolve: {exc}") from None
    refused = []
    for *_, sockaddr in infos:
        candidate = ipaddress.ip_address(sockaddr[0])
        if address_allowed(candidate, allowed):
            return str(candidate)
        refused.append(str(candidate))
    raise UrlRefused(
        f"{target.host} resolves only to addresses that are not public "
        f"({', '.join(refused) or 'none'}; see [webhooks] allow_networks)"
    )
