"""URLs that name several hosts, as libpq's ``postgresql://u@h1:5432,h2:5433/db`` and
Sentinel's ``redis+sentinel://h1:26379,h2/service``: split into their parts, each
``host[:port]`` (``[v6]:port`` for IPv6) checked. Parsing only: what each scheme makes
of the parts stays with its parser (``config.postgres_url``, ``redisurl.redis_url``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HostList", "host_port", "split_hosts"]


@dataclass(frozen=True, slots=True)
class HostList:
    """``scheme://[userinfo@]spec[,spec...][path][?query]``, split."""

    scheme: str
    userinfo: str
    """What stands before the last ``@`` of the host part ('' when none)."""
    at: str
    """``@`` when the URL has a user part, else ''."""
    netloc: str
    """The user part and the hosts, as written."""
    specs: tuple[str, ...]
    """Each ``host[:port]`` as written; empty when the URL names no host."""
    path: str
    query: str


def split_hosts(url: str) -> HostList:
    """Split ``url`` (which has ``://``); its hosts are not checked (:func:`host_port`)."""
    scheme, _, rest = url.partition("://")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    path, _, query = tail.partition("?")
    userinfo, at, hosts = netloc.rpartition("@")
    specs = tuple(hosts.split(",")) if hosts else ()
    return HostList(scheme, userinfo, at, netloc, specs, path, query)


def host_port(spec: str, *, noun: str, empty: str, example_port: int) -> tuple[str, str]:
    """``(host, port)`` of one ``host[:port]`` (port '' when left out). ValueError when
    the host is empty (``empty`` is the message), an IPv6 host is not bracketed whole, or
    the port is not 1–65535; ``noun`` names the part in the messages (``host``)."""
    if spec.startswith("["):
        host, bracket, port = spec[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise ValueError(f"{noun} {spec!r}: write an IPv6 host as '[::1]:{example_port}'")
        port = port[1:]
    else:
        host, _, port = spec.partition(":")
    if not host:
        raise ValueError(empty)
    if port and not (port.isdigit() and 0 < int(port) <= 65535):
        raise ValueError(f"{noun} {spec!r}: the port must be a number from 1 to 65535")
    return host, port
