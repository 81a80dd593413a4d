"""Names of throttle buckets and of the backend records that hold them.

A destination's bucket key embeds the rule name, the egress source (when limits apply per
source), the scope value and a short digest of the limits::

    google:9c1f04d2                              scope "rule": every match shares one bucket
    google@192.0.2.10:9c1f04d2                   ... per egress source
    default:site=mx1.example.net:41be90aa        scope "site": one bucket per MX site
    corp:domain=example.com:0d7e55c3             scope "domain": one bucket per recipient domain

Two more kinds of record hang off an egress source and a destination (``provider``: a
rule name for scope ``rule``, else ``rule:site=…`` / ``rule:domain=…``)::

    block@ip-a|google                            provider-block strikes and suspension
    warmup@ip-a|google                           warm-up counters (one per day and per hour)

Because the digest covers every limit, changing a limit starts a fresh bucket (fresh rate,
connection and adaptive state) instead of reinterpreting the old one. Free-form parts are
percent-encoded, so a key never holds ``{``, ``}``, ``:`` inside a part, or whitespace;
backends can wrap a key in ``{...}`` as a Redis Cluster hash tag so that all records of one
bucket live in one slot and one Lua script can touch them atomically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

__all__ = [
    "BackendKeys",
    "backend_keys",
    "block_key",
    "destination_key",
    "group_rate_keys",
    "limits_digest",
    "provider_id",
    "quota_group",
    "quota_keys",
]

_SAFE = "-._~()|[]!*+,;="


class Limits(Protocol):
    """The fields of a bucket's limits that its key depends on
    (``postline.throttle.rules.Limits``; declared here so the rules can import the keys)."""

    @property
    def messages(self) -> int | None: ...
    @property
    def period(self) -> float: ...
    @property
    def burst(self) -> int | None: ...
    @property
    def connections(self) -> int | None: ...
    @property
    def messages_per_connection(self) -> int | None: ...
    @property
    def recipients_per_transaction(self) -> int | None: ...


def limits_digest(limits: Limits) -> str:
    """Eight hex digits that change whenever any field of ``limits`` changes.

    The digest is computed from a canonical text (SHA-256), so it is the same on every
    node and in every process.
    """
    canonical = (
        f"messages={limits.messages};period={float(limits.period)!r};burst={limits.burst};"
        f"connections={limits.connections};"
        f"messages_per_connection={limits.messages_per_connection};"
        f"recipients_per_transaction={limits.recipients_per_transaction}"
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:8]


def _part(text: str) -> str:
    return quote(text, safe=_SAFE)


def destination_key(
    rule_name: str,
    scope: str,
    value: str,
    limits: Limits,
    *,
    source: str | None = None,
) -> str:
    """Build the bucket key of one destination (see the module docstring for the shape).

    ``value`` is ignored for scope ``"rule"``; ``source`` adds ``@source`` after the rule
    name when limits apply per egress IP or pool.
    """
    head = _part(rule_name)
    if source:
        head = f"{head}@{_part(source)}"
    if scope == "rule":
        return f"{head}:{limits_digest(limits)}"
    return f"{head}:{scope}={_part(value)}:{limits_digest(limits)}"


def provider_id(rule_name: str, scope: str, value: str) -> str:
    """The destination a bucket key names, without source and limits digest: what
    warm-up caps and provider blocks are counted against (``google``,
    ``default:site=mx1.example.net``)."""
    if scope == "rule":
        return rule_name
    return f"{rule_name}:{scope}={value}"


def block_key(source: str, provider: str) -> str:
    """The adaptive record counting block replies from ``provider`` to ``source``."""
    return f"block@{_part(source)}|{_part(provider)}"


def quota_group(source: str, provider: str) -> str:
    """The group of warm-up counters of ``source`` towards ``provider``."""
    return f"warmup@{_part(source)}|{_part(provider)}"


def quota_keys(group: str, windows: Sequence[str], prefix: str = "postline:quota") -> list[str]:
    """Name the counters of ``group``, one per window, all in one Redis Cluster slot."""
    tag = f"{{{group}}}"
    return [f"{prefix}:{tag}:{_part(w)}" for w in windows]


def group_rate_keys(
    group: str, names: Sequence[str], prefix: str = "postline:throttle"
) -> list[str]:
    """Name the GCRA records of buckets ``names`` of ``group`` (``acquire_all``), all in one
    Redis Cluster slot: ``{prefix}:{group}:<name>:rate``."""
    tag = f"{{{group}}}"
    return [f"{prefix}:{tag}:{_part(name)}:rate" for name in names]


@dataclass(frozen=True, slots=True)
class BackendKeys:
    """The records a shared backend keeps for one bucket, all in one Redis Cluster slot."""

    rate: str
    """GCRA theoretical arrival time."""
    adaptive: str
    """Adaptive state: factor, strikes, suspension."""
    leases: str
    """Connection leases: lease id → expiry."""


def backend_keys(key: str, prefix: str = "postline:throttle") -> BackendKeys:
    """Name the records of bucket ``key`` under ``prefix``; ``{key}`` is the hash tag."""
    tag = f"{{{key}}}"
    return BackendKeys(
        rate=f"{prefix}:{tag}:rate",
        adaptive=f"{prefix}:{tag}:adaptive",
        leases=f"{prefix}:{tag}:leases",
    )
