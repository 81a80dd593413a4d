"""Tenants: create (with a first API key), list, show with status, pause and resume.

Pausing is the reputation guardrail's pause (:mod:`postline.reputation.service`): the
tenant's new mail is refused and its queued mail held until it is resumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postline.control import audit
from postline.control.context import ControlContext
from postline.errors import NotFound, ValidationError
from postline.reputation import OK, pause_tenant, resume_tenant
from postline.store.base import Tenant, TenantStatus
from postline.tenants import generate_key, hash_key, key_prefix

__all__ = [
    "NewTenant",
    "StatusChange",
    "TenantView",
    "check_name",
    "create_tenant",
    "find_tenant",
    "list_tenants",
    "pause",
    "resume",
    "show_tenant",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class TenantView:
    tenant: Tenant
    status: TenantStatus


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


async def create_tenant(ctx: ControlContext, name: str) -> NewTenant:
    """A new tenant and its first API key (:class:`IntegrityViolation` if the name is
    taken)."""
    check_name(name)
    tenant = await ctx.store.create_tenant(name)
    key = generate_key()
    prefix = key_prefix(key)
    await ctx.store.add_api_key(tenant.id, hash_key(key), prefix)
    await audit.record(
        ctx,
        "tenant.create",
        tenant.id,
        tenant_id=tenant.id,
        detail={"name": name, "key_prefix": prefix},
    )
    return NewTenant(tenant, key, prefix)


async def find_tenant(
    ctx: ControlContext, *, id: str | None = None, name: str | None = None
) -> Tenant:
    tenant = await ctx.store.get_tenant(id=id, name=name)
    if tenant is None:
        raise NotFound(f"no tenant {'named ' + repr(name) if name else 'with id ' + repr(id)}")
    return tenant


async def _view(ctx: ControlContext, tenant: Tenant) -> TenantView:
    rows = await ctx.store.tenant_statuses(tenant.id)
    return TenantView(tenant, rows[0] if rows else TenantStatus(tenant.id, OK))


async def list_tenants(ctx: ControlContext) -> list[TenantView]:
    """Every tenant in name order, with its status."""
    statuses = {s.tenant_id: s for s in await ctx.store.tenant_statuses()}
    return [
        TenantView(t, statuses.get(t.id) or TenantStatus(t.id, OK))
        for t in await ctx.store.list_tenants()
    ]


async def show_tenant(ctx: ControlContext, tenant_id: str) -> TenantView:
    return await _view(ctx, await find_tenant(ctx, id=tenant_id))


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
