"""The audit log: every mutating control action writes one entry (who, what, to which
tenant and object, in which request, and what changed — never a secret)."""

from __future__ import annotations

import time
from typing import Any

from postline.control.context import ControlContext
from postline.store.base import AuditEntry, NewAuditEntry

__all__ = ["MAX_PAGE", "entries", "record"]

MAX_PAGE = 1000


async def record(
    ctx: ControlContext,
    action: str,
    target: str,
    *,
    tenant_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Write an entry for ``action`` on ``target`` by the context's actor; its id.

    Written after the action succeeded, in a transaction of its own: an action whose
    entry failed to be written has still happened (the caller sees the error)."""
    entry = NewAuditEntry(
        at=time.time(),
        actor_kind=ctx.actor.kind,
        actor_id=ctx.actor.id,
        tenant_id=tenant_id,
        action=action,
        target=target,
        request_id=ctx.request_id,
        detail=detail or {},
    )
    return await ctx.store.append_audit(entry)


async def entries(
    ctx: ControlContext, *, tenant_id: str | None = None, after: int = 0, limit: int = 100
) -> list[AuditEntry]:
    """One page of entries in the order they were written (a tenant's, or all)."""
    return await ctx.store.audit_entries(
        tenant_id=tenant_id, after=max(0, after), limit=max(1, min(limit, MAX_PAGE))
    )
