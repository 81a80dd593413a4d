"""Where tenants stand with their sending reputation: each tenant's outcomes over the
reputation window, its bounce and complaint rates, and the thresholds it is judged
against. Reads only (pausing and resuming are :mod:`postline.control.tenants`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from postline.control.context import ControlContext
from postline.control.tenants import TenantView, list_tenants
from postline.reputation import Counts, Thresholds

__all__ = ["Standing", "standings", "thresholds"]


@dataclass(frozen=True, slots=True)
class Standing:
    view: TenantView
    counts: Counts
    """Delivered, hard-bounced and complained over the window (since the last resume)."""


def thresholds(ctx: ControlContext) -> Thresholds:
    """The warning and pause thresholds of ``[reputation]`` (and the minimum volume)."""
    return Thresholds.from_config(ctx.config.reputation)


async def standings(ctx: ControlContext) -> list[Standing]:
    """Every tenant in name order with its status and its counts over the window."""
    since = time.time() - ctx.config.reputation.window
    totals: dict[str, Counts] = {}
    for t in await ctx.store.reputation_totals(since=since):
        totals[t.tenant_id] = totals.get(t.tenant_id, Counts()) + Counts(
            t.delivered, t.bounced, t.complained
        )
    return [Standing(v, totals.get(v.tenant.id, Counts())) for v in await list_tenants(ctx)]
