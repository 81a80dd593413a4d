"""Tenants: create (with a first API key), list, show with status, limits and usage,
change limits, pause, resume and delete.

Pausing is the reputation guardrail's pause (:mod:`postline.reputation.service`): the
tenant's new mail is refused and its queued mail held until it is resumed. A tenant's
own limits (:mod:`postline.limits`) replace the ``[limits]`` defaults field by field.

Deleting a tenant (:func:`delete`) stops its sending and keeps its history: in one
transaction its row becomes a tombstone (its name is not reused), its API keys are
revoked, it is paused (new mail refused, every queue held) and its sender domains, DKIM
keys and webhooks are removed; then its queued mail is cancelled (a ``cancelled`` event
per recipient) and its suppressions removed, a batch (:data:`BATCH`) per transaction, for
at most :data:`DELETE_BUDGET` seconds of the request: what is left then, and mail other
nodes accepted before they saw the revocation, is finished by every node's control
chores (:func:`finish_deletions`). Its messages and events stay for ``[retention]``
and are removed by the retention cleaner like any other.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from postline.control import audit
from postline.control.context import ControlContext
from postline.errors import IntegrityViolation, NotFound, ValidationError
from postline.limits import TenantLimits, UsageReport, tenant_limits, usage_report
from postline.reputation import OK, pause_tenant, resume_tenant
from postline.store.base import LimitOverrides, Tenant, TenantRemoval, TenantStatus
from postline.tenants import generate_key, hash_key, key_prefix

__all__ = [
    "BATCH",
    "DELETE_BUDGET",
    "FINISH_WINDOW",
    "HANDOVER",
    "LIMIT_FIELDS",
    "MAX_LIMIT",
    "Deletion",
    "NewTenant",
    "StatusChange",
    "TenantView",
    "check_limit",
    "check_name",
    "create_tenant",
    "delete",
    "find_tenant",
    "finish_deletions",
    "list_tenants",
    "pause",
    "resume",
    "set_limits",
    "show_tenant",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


LIMIT_FIELDS = ("rate", "burst", "daily", "monthly")
MAX_LIMIT = 1_000_000_000
BATCH = 1000
"""Recipients cancelled (or suppressions removed) per write transaction of a deletion."""
DELETE_BUDGET = 10.0
"""Seconds a deletion request spends cancelling queued mail; the node's chores go on."""
HANDOVER = DELETE_BUDGET + 5.0
"""Seconds after a deletion before the nodes' chores take over from its request."""
FINISH_WINDOW = 86_400.0
"""Seconds after a deletion during which the nodes' chores look for the tenant's mail
still queued (accepted by nodes that had not yet seen the revocation, or left over by a
deletion request that ran out of time)."""


@dataclass(frozen=True, slots=True)
class Deletion:
    tenant: Tenant
    """The tombstone (``deleted_at`` set)."""
    removed: TenantRemoval | None
    """What went with the tenant; None: it had been deleted before this call."""
    cancelled: int
    """Queued recipients this call cancelled."""
    remaining: int
    """Queued recipients left to cancel (by the nodes' chores) when the call ended."""
    suppressions: int
    """Suppressions and soft-bounce runs this call removed."""


@dataclass(frozen=True, slots=True)
class TenantView:
    tenant: Tenant
    status: TenantStatus
    limits: TenantLimits
    """What holds the tenant: its own limits over the ``[limits]`` defaults."""
    usage: UsageReport | None = None
    """Its usage of today and this month (shown for one tenant, not in lists)."""


@dataclass(frozen=True, slots=True)
class NewTenant:
    tenant: Tenant
    key: str
    """Its first API key: shown once, never stored."""
    key_prefix: str


@dataclass(frozen=True, slots=True)
class StatusChange:
    view: TenantView
    changed: bool
    """False: the tenant was in that state already (nothing changed; still audited)."""


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValidationError(
            f"tenant name {name!r} is invalid",
            field="name",
            fix="Use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
        )


def check_limit(field: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= MAX_LIMIT:
        raise ValidationError(
            f"{field} {value} is out of range",
            field=field,
            fix=f"Give 0 (unlimited) to {MAX_LIMIT}, or null for the configured default.",
        )


async def create_tenant(
    ctx: ControlContext, name: str, limits: LimitOverrides | None = None
) -> NewTenant:
    """A new tenant and its first API key (:class:`IntegrityViolation` if the name is
    taken), with its own ``limits`` (None: the ``[limits]`` defaults)."""
    check_name(name)
    own = limits or LimitOverrides()
    for field, value in own.as_dict().items():
        check_limit(field, value)
    taken = await ctx.store.get_tenant(name=name)
    if taken is not None and taken.deleted_at is not None:
        raise IntegrityViolation(
            f"the name {name!r} belonged to tenant {taken.id}, deleted; names of deleted "
            "tenants are not reused (their audit entries, messages and events name them)"
        )
    tenant = await ctx.store.create_tenant(name)
    if own != LimitOverrides():
        await ctx.store.set_tenant_limits(tenant.id, own)
        if ctx.on_limits is not None:
            ctx.on_limits()
    key = generate_key()
    prefix = key_prefix(key)
    await ctx.store.add_api_key(tenant.id, hash_key(key), prefix)
    await audit.record(
        ctx,
        "tenant.create",
        tenant.id,
        tenant_id=tenant.id,
        detail={"name": name, "key_prefix": prefix, "limits": own.as_dict()},
    )
    return NewTenant(tenant, key, prefix)


async def find_tenant(
    ctx: ControlContext,
    *,
    id: str | None = None,
    name: str | None = None,
    deleted: bool = False,
) -> Tenant:
    """The tenant with this id (or name); a deleted one only with ``deleted``."""
    tenant = await ctx.store.get_tenant(id=id, name=name)
    if tenant is None:
        raise NotFound(f"no tenant {'named ' + repr(name) if name else 'with id ' + repr(id)}")
    if tenant.deleted_at is not None and not deleted:
        raise NotFound(f"tenant {tenant.name!r} ({tenant.id}) was deleted")
    return tenant


async def _view(ctx: ControlContext, tenant: Tenant, *, usage: bool = False) -> TenantView:
    rows = await ctx.store.tenant_statuses(tenant.id)
    own = await ctx.store.tenant_limits(tenant.id)
    limits = tenant_limits(ctx.config.limits, own.get(tenant.id))
    report = None
    if usage:
        report = await usage_report(ctx.store, tenant.id, limits, now=time.time())
    return TenantView(tenant, rows[0] if rows else TenantStatus(tenant.id, OK), limits, report)


async def list_tenants(ctx: ControlContext) -> list[TenantView]:
    """Every tenant in name order, with its status and limits."""
    statuses = {s.tenant_id: s for s in await ctx.store.tenant_statuses()}
    own = await ctx.store.tenant_limits()
    return [
        TenantView(
            t,
            statuses.get(t.id) or TenantStatus(t.id, OK),
            tenant_limits(ctx.config.limits, own.get(t.id)),
        )
        for t in await ctx.store.list_tenants()
    ]


async def show_tenant(ctx: ControlContext, tenant_id: str) -> TenantView:
    """One tenant with its status, limits and usage."""
    return await _view(ctx, await find_tenant(ctx, id=tenant_id), usage=True)


async def set_limits(
    ctx: ControlContext, tenant: Tenant, changes: Mapping[str, int | None]
) -> TenantView:
    """Change some of the tenant's own limits (:data:`LIMIT_FIELDS`; None: back to the
    ``[limits]`` default); the others stay. Audited with the limits before and after,
    also when nothing changed."""
    unknown = sorted(set(changes) - set(LIMIT_FIELDS))
    if unknown:
        raise ValidationError(
            f"unknown limit {unknown[0]!r}",
            field=unknown[0],
            fix=f"Use some of: {', '.join(LIMIT_FIELDS)}.",
        )
    for field, value in changes.items():
        check_limit(field, value)
    before = (await ctx.store.tenant_limits(tenant.id)).get(tenant.id) or LimitOverrides()
    after = replace(before, **changes)
    changed = after != before
    if changed:
        await ctx.store.set_tenant_limits(tenant.id, after)
        if ctx.on_limits is not None:
            ctx.on_limits()
    await audit.record(
        ctx,
        "tenant.limits",
        tenant.id,
        tenant_id=tenant.id,
        detail={"previous": before.as_dict(), "limits": after.as_dict(), "changed": changed},
    )
    return await _view(ctx, tenant, usage=True)


async def _record(
    ctx: ControlContext, tenant: Tenant, action: str, before: TenantView, changed: bool
) -> StatusChange:
    """Apply a change on the serving node, and audit the request either way (an
    operator's attempt is worth knowing even when it changed nothing)."""
    view = await _view(ctx, tenant) if changed else before
    if changed and ctx.on_tenant_status is not None:
        await ctx.on_tenant_status(tenant.id)
    await audit.record(
        ctx,
        action,
        tenant.id,
        tenant_id=tenant.id,
        detail={
            "previous": before.status.status,
            "status": view.status.status,
            "reason": view.status.reason,
            "changed": changed,
        },
    )
    return StatusChange(view, changed)


async def pause(ctx: ControlContext, tenant: Tenant, *, reason: str = "") -> StatusChange:
    """Pause a tenant: its new mail is refused, its queued mail held."""
    before = await _view(ctx, tenant)
    done = await pause_tenant(ctx.store, tenant, reason=reason, node_id=ctx.node_id)
    return await _record(ctx, tenant, "tenant.pause", before, done is not None)


async def resume(ctx: ControlContext, tenant: Tenant) -> StatusChange:
    """Resume a paused (or warned) tenant; it is judged on outcomes from now on."""
    before = await _view(ctx, tenant)
    done = await resume_tenant(ctx.store, tenant, node_id=ctx.node_id)
    return await _record(ctx, tenant, "tenant.resume", before, done is not None)


async def _queued(ctx: ControlContext, tenant_id: str) -> list[tuple[str, int]]:
    """The tenant's queues with something queued: (domain, depth), from the counters."""
    out: list[tuple[str, int]] = []
    after = ""
    while True:
        stats = await ctx.store.queue_stats(tenant_id, after=after, limit=1000)
        out += [(s.domain, s.depth) for s in stats if s.depth > 0]
        if len(stats) < 1000:
            return out
        after = stats[-1].domain


async def _finish(ctx: ControlContext, tenant_id: str, deadline: float) -> tuple[int, int, int]:
    """Cancel the tenant's queued mail and remove its suppressions, a batch per
    transaction, until done or ``deadline`` (monotonic); (cancelled, left queued, removed)."""
    cancelled = removed = 0
    for domain, _depth in await _queued(ctx, tenant_id):
        while time.monotonic() < deadline:
            n = await ctx.store.cancel_queued(
                tenant_id, domain, now=time.time(), node_id=ctx.node_id, limit=BATCH
            )
            cancelled += n
            if n < BATCH:
                break
    while time.monotonic() < deadline:
        n = await ctx.store.purge_tenant_data(tenant_id, limit=BATCH)
        removed += n
        if n < BATCH:
            break
    remaining = sum(depth for _d, depth in await _queued(ctx, tenant_id))
    return cancelled, remaining, removed


async def delete(ctx: ControlContext, tenant: Tenant, *, budget: float = DELETE_BUDGET) -> Deletion:
    """Delete a tenant (see the module's doc): its sending stops at once on this node
    and within ``[api] key_cache_ttl`` on the others. Deleting a deleted tenant cancels
    what is still queued. Audited either way."""
    deadline = time.monotonic() + budget
    removed = await ctx.store.delete_tenant(tenant.id, now=time.time())
    if removed is not None:
        if ctx.on_key_revoked is not None:
            ctx.on_key_revoked()
        if ctx.on_pause is not None:
            ctx.on_pause(tenant.id, "*", True)
        if ctx.on_tenant_status is not None:
            await ctx.on_tenant_status(tenant.id)
    cancelled, remaining, purged = await _finish(ctx, tenant.id, deadline)
    tomb = await find_tenant(ctx, id=tenant.id, deleted=True)
    await audit.record(
        ctx,
        "tenant.delete",
        tenant.id,
        tenant_id=tenant.id,
        detail={
            "name": tenant.name,
            "changed": removed is not None,
            "keys_revoked": removed.keys_revoked if removed else 0,
            "domains_removed": removed.domains if removed else 0,
            "webhooks_removed": removed.webhooks if removed else 0,
            "cancelled": cancelled,
            "remaining": remaining,
            "suppressions_removed": purged,
        },
    )
    return Deletion(tomb, removed, cancelled, remaining, purged)


async def finish_deletions(ctx: ControlContext, *, budget: float = DELETE_BUDGET) -> int:
    """Cancel the mail still queued of tenants deleted in the last :data:`FINISH_WINDOW`
    seconds but not the last :data:`HANDOVER` seconds, when their deletion request may
    still be at work (and remove what is left of their suppressions), for at most ``budget``
    seconds; how many recipients were cancelled. Run by every node's chores: several
    nodes at once share the work (each batch is one transaction)."""
    deadline = time.monotonic() + budget
    now = time.time()
    cancelled = 0
    for t in await ctx.store.list_tenants(deleted=True):
        if time.monotonic() >= deadline:
            break
        # Left to the deletion request while it may still be at work.
        if t.deleted_at is None or not now - FINISH_WINDOW < t.deleted_at < now - HANDOVER:
            continue
        n, _left, _purged = await _finish(ctx, t.id, deadline)
        cancelled += n
    return cancelled
