"""The operator's overview: traffic per minute, the queue at a glance, and the tenants
whose sending is held back. Reads only (nothing to audit), each from counters: the cost
never follows the depth of the queue or the length of the event log."""

from __future__ import annotations

import time
from dataclasses import dataclass

from postline.control.context import ControlContext
from postline.store.base import ActivityCount

__all__ = ["MINUTE", "QueueSummary", "activity", "queue_summary"]

MINUTE = 60.0
_DOMAINS = 500
"""Domains whose oldest queued recipient the summary looks at (in name order)."""


async def activity(
    ctx: ControlContext, *, window: float, now: float | None = None
) -> list[ActivityCount]:
    """One entry per minute of the last ``window`` seconds, oldest first, the current
    minute last; minutes without traffic are zeros."""
    end = time.time() if now is None else now
    last = int(end // MINUTE) * MINUTE
    first = last - (max(1, int(window // MINUTE)) - 1) * MINUTE
    stored = {c.bucket: c for c in await ctx.store.activity(since=first)}
    out = []
    bucket = first
    while bucket <= last:
        out.append(stored.get(bucket) or ActivityCount(bucket))
        bucket += MINUTE
    return out


@dataclass(frozen=True, slots=True)
class QueueSummary:
    total: int
    """Queued recipients in the whole store (from the counters)."""
    deferred: int
    """Of those in the domains looked at, the ones attempted at least once."""
    oldest_at: float | None
    """Creation time of the oldest queued recipient of the domains looked at."""
    domains: int
    """Domains with something queued among those looked at."""
    top: list[tuple[str, int]]
    """The deepest domains and their depth."""
    states: dict[str, int]
    """Recipients per state over the whole store (from the counters)."""


async def queue_summary(ctx: ControlContext, *, top: int = 10) -> QueueSummary:
    """The queue in a few numbers: one counter read, and one page of the per-domain
    counters (up to 500 domains; their age by one index probe each)."""
    depths = await ctx.store.queue_depths(top=top)
    stats = [s for s in await ctx.store.queue_stats(None, limit=_DOMAINS) if s.depth]
    return QueueSummary(
        total=depths.total,
        deferred=sum(s.deferred for s in stats),
        oldest_at=min((s.oldest_at for s in stats), default=None),
        domains=len(stats),
        top=list(depths.top),
        states=await ctx.store.state_counts(),
    )
