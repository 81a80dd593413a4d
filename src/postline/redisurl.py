"""The Redis URLs of ``[throttle] backend``: one server, or a master found through Sentinel.

One server, as redis-py reads it::

    redis://[[user]:password@]host[:port][/db]
    rediss://...                      (TLS)
    unix://[[user]:password@]/path/to/redis.sock[?db=0]

A master and its replicas watched by Redis Sentinel::

    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db][?options]

The hosts are the sentinels (port 26379 when left out), ``service`` the name the
sentinels monitor the master under (``sentinel monitor <service> ...``), ``db`` the
database number (0). The user and password are the master's (``requirepass`` /
ACL), the same on every server that may become master. Options: ``sentinel_username``
and ``sentinel_password`` when the sentinels themselves require them
(``requirepass`` in sentinel.conf). Parts are percent-decoded.

``redis+cluster://`` is refused: the throttle's connection-slot fencing keeps one record
for every bucket, which a Redis Cluster spreads over its shards (docs/scaling.md).

This module parses only; :func:`redis_url` raises ``ValueError`` with what to write
instead (never quoting a password).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from postline.hostlist import host_port, split_hosts

__all__ = ["SENTINEL_PORT", "RedisUrl", "redis_url", "shown"]

SENTINEL_PORT = 26379
"""The port of a sentinel that the URL names without one."""

_SINGLE = ("redis", "rediss", "unix")
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
_SHAPE = "redis+sentinel://[user:password@]host1:26379,host2:26379/<service>[/db]"


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """A parsed throttle backend URL (see the module)."""

    url: str
    """The URL as written (hand it to redis-py for one server)."""
    sentinels: tuple[tuple[str, int], ...] = ()
    """The sentinels, in order; empty for one server."""
    service: str = ""
    """The master's name at the sentinels."""
    db: int = 0
    username: str | None = None
    """The master's user (None: the default user)."""
    password: str | None = None
    """The master's password (None: none)."""
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)

    def __repr__(self) -> str:
        if not self.sentinels:
            return "RedisUrl(single server)"
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"RedisUrl(sentinels={hosts}, service={self.service!r}, db={self.db})"


def _sentinel(spec: str) -> tuple[str, int]:
    host, port = host_port(
        spec,
        noun="sentinel",
        empty=f"a sentinel has an empty host; write e.g. '{_SHAPE}'",
        example_port=SENTINEL_PORT,
    )
    return host, int(port) if port else SENTINEL_PORT


def redis_url(url: str) -> RedisUrl:
    """Parse a throttle backend URL (see the module); ValueError says what is wrong."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ValueError(
            "a Redis URL starts with redis://, rediss://, unix:// or redis+sentinel://"
        )
    if scheme in _SINGLE:
        return RedisUrl(url)
    if scheme == "redis+cluster":
        raise ValueError(
            "Redis Cluster is not supported: connection-slot fencing keeps one record for "
            "every bucket, which a cluster spreads over its shards; for high availability "
            f"use Sentinel ('{_SHAPE}', docs/scaling.md)"
        )
    if scheme != "redis+sentinel":
        raise ValueError(
            f"unknown scheme {scheme!r}: use redis://, rediss://, unix:// or redis+sentinel://"
        )
    split = split_hosts(url)
    path, query = split.path, split.query
    if not split.specs:
        raise ValueError(f"the URL names no sentinel; write '{_SHAPE}'")
    sentinels = tuple(_sentinel(spec) for spec in split.specs)
    parts = path.strip("/").split("/") if path.strip("/") else []
    if not parts:
        raise ValueError(
            "the URL names no service: add the name the sentinels monitor the master "
            f"under (sentinel monitor <service> ...), as in '{_SHAPE}'"
        )
    if len(parts) > 2:
        raise ValueError(f"too many path parts after the sentinels; write '{_SHAPE}'")
    service = unquote(parts[0])
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError(f"the database {parts[1]!r} must be a number, e.g. '/mymaster/0'")
        db = int(parts[1])
    username: str | None = None
    password: str | None = None
    if split.at:
        user, colon, secret = split.userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _SENTINEL_OPTIONS:
            raise ValueError(
                f"unknown option {key!r}: a redis+sentinel URL takes "
                f"{' and '.join(_SENTINEL_OPTIONS)} only"
            )
        options[key] = value
    return RedisUrl(
        url,
        sentinels=sentinels,
        service=service,
        db=db,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
    )


_SECRET_OPTION = re.compile(r"((?:^|[?&])(?:password|sentinel_password)=)[^&]*")


def shown(url: str) -> str:
    """``url`` as it may be logged or shown: the password of its user part and any
    ``password`` / ``sentinel_password`` option replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    head, question, query = rest.partition("?")
    at = head.rfind("@")  # a password may hold '@' and '/'; the host part holds neither
    if at >= 0:
        user, colon, _ = head[:at].partition(":")
        head = f"{user}:***{head[at:]}" if colon else head
    if question:
        query = _SECRET_OPTION.sub(r"\1***", query)
    return f"{scheme}://{head}{question}{query}"
