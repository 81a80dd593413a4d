"""What tenants keep besides mail, as an operator reads it: suppression lists and sender
domains with the last check of their DNS records. Reads only."""

from __future__ import annotations

import time

from postline.control.context import ControlContext
from postline.store.base import SenderDomain, Suppression

__all__ = ["GLOBAL", "MAX_PAGE", "sender_domains", "suppressions"]

GLOBAL = "*"
"""The tenant of the global suppression list."""
MAX_PAGE = 500


async def suppressions(
    ctx: ControlContext, tenant_id: str, *, after: str = "", limit: int = 100
) -> list[Suppression]:
    """Live suppressions of a tenant (or of the global list, :data:`GLOBAL`) in address
    order, one page after ``after``."""
    return await ctx.store.list_suppressions(
        tenant_id, after=after, limit=max(1, min(limit, MAX_PAGE)), now=time.time()
    )


async def sender_domains(ctx: ControlContext, tenant_id: str | None = None) -> list[SenderDomain]:
    """Every tenant's sender domains (or one tenant's), with their DNS check."""
    return await ctx.store.list_sender_domains(tenant_id)
