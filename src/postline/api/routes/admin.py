"""/admin/v1: the operator's API — tenants (with their limits and usage), their API keys,
admin tokens, the audit log.

Every request needs an admin token (``Authorization: Bearer pla_…``); a tenant's API key
is refused with 403. Each route translates HTTP to one action of :mod:`postline.control`,
which does the work and writes the audit entry (with the request's ``X-Request-Id``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from postline.api.admin_schemas import (
    AdminKeyCreated,
    AdminKeyIn,
    AdminKeyLimitsOut,
    AdminKeyOut,
    AdminKeyPatch,
    AdminKeysOut,
    AdminTenantCreated,
    AdminTenantDeleted,
    AdminTenantIn,
    AdminTenantLimitsOut,
    AdminTenantOut,
    AdminTenantPatch,
    AdminTenantsOut,
    AdminTenantStatusOut,
    AdminTokenCreated,
    AdminTokenIn,
    AdminTokenOut,
    AdminTokensOut,
    AuditEntryOut,
    AuditOut,
    TenantPauseIn,
)
from postline.api.context import ApiContext, control_context
from postline.api.problems import Problem
from postline.api.schemas import ProblemOut, iso, usage_out
from postline.config import Config
from postline.control import Actor, ControlContext, audit, keys, tenants, tokens
from postline.control.tokens import AdminAuthenticator
from postline.limits import key_rate
from postline.store.base import ApiKey, LimitOverrides
from postline.tenants import SCOPES

__all__ = ["Control", "current_admin", "router"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="postline-admin"'}


async def current_admin(request: Request) -> Actor:
    """Dependency: the admin named by ``Authorization: Bearer <admin token>``."""
    ctx: ApiContext = request.app.state.ctx
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Problem(
            401,
            "unauthenticated",
            "No admin token was given.",
            fix="Send 'Authorization: Bearer <token>'; create a token with "
            "'postline admin token create --config FILE'.",
            headers=_CHALLENGE,
        )
    admin_auth: AdminAuthenticator = request.app.state.admin_auth
    actor = await admin_auth.actor(token)
    if actor is not None:
        return actor
    if await ctx.auth.tenant(token) is not None:
        raise Problem(
            403,
            "forbidden",
            "A tenant's API key cannot use the admin API.",
            fix="Use an admin token ('postline admin token create --config FILE').",
        )
    raise Problem(
        401,
        "unauthenticated",
        "The admin token is not valid (unknown or revoked).",
        fix="Check the token, or create one with 'postline admin token create'.",
        headers={"WWW-Authenticate": 'Bearer realm="postline-admin", error="invalid_token"'},
    )


def _control(request: Request, actor: Annotated[Actor, Depends(current_admin)]) -> ControlContext:
    return control_context(actor, request)


Control = Annotated[ControlContext, Depends(_control)]
_ERRORS: dict[int | str, dict[str, type[ProblemOut]]] = {
    401: {"model": ProblemOut},
    403: {"model": ProblemOut},
}
_NOT_FOUND: dict[int | str, dict[str, type[ProblemOut]]] = {**_ERRORS, 404: {"model": ProblemOut}}

router = APIRouter(prefix="/admin/v1", tags=["admin"], responses=_ERRORS)


_OUT_NAMES = {"rate": "rate_per_second", "daily": "daily_quota", "monthly": "monthly_quota"}


def _tenant(view: tenants.TenantView) -> AdminTenantOut:
    s = view.status
    changed = bool(s.changed_by)
    lim = view.limits
    return AdminTenantOut(
        id=view.tenant.id,
        name=view.tenant.name,
        created_at=iso(view.tenant.created_at) or "",
        status=AdminTenantStatusOut(
            status=s.status,
            reason=s.reason,
            changed_at=iso(s.changed_at) if changed else None,
            changed_by=s.changed_by or None,
        ),
        limits=AdminTenantLimitsOut(
            rate_per_second=lim.rate,
            burst=lim.burst,
            daily_quota=lim.daily,
            monthly_quota=lim.monthly,
            overridden=[_OUT_NAMES.get(f, f) for f in lim.overridden],
        ),
        usage=usage_out(view.usage) if view.usage is not None else None,
    )


def _token(t: tokens.TokenView) -> AdminTokenOut:
    return AdminTokenOut(
        id=t.id,
        name=t.name,
        prefix=t.prefix,
        source=t.source,
        created_at=iso(t.created_at),
        last_used_at=iso(t.last_used_at),
        revoked_at=iso(t.revoked_at),
    )


def _key(k: ApiKey, config: Config) -> AdminKeyOut:
    own = key_rate(config.limits, k.rate, k.burst)
    return AdminKeyOut(
        id=k.id,
        name=k.name,
        prefix=k.prefix,
        scopes=list(SCOPES) if k.scopes is None else list(k.scopes),
        limits=AdminKeyLimitsOut(
            rate_per_second=own.rate,
            burst=own.burst,
            overridden=[_OUT_NAMES.get(f, f) for f in own.overridden],
        ),
        created_at=iso(k.created_at) or "",
        last_used_at=iso(k.last_used_at),
        revoked_at=iso(k.revoked_at),
    )


@router.get("/tenants", summary="Every tenant with its sending status")
async def list_tenants(ctl: Control) -> AdminTenantsOut:
    return AdminTenantsOut(tenants=[_tenant(v) for v in await tenants.list_tenants(ctl)])


@router.post(
    "/tenants",
    status_code=201,
    responses={409: {"model": ProblemOut}, 422: {"model": ProblemOut}},
    summary="Create a tenant and its first API key",
)
async def create_tenant(body: AdminTenantIn, ctl: Control) -> AdminTenantCreated:
    """``limits`` gives the tenant limits of its own; left out, the ``[limits]`` defaults
    apply (and follow them when they change)."""
    own = LimitOverrides(**body.limits.changes()) if body.limits is not None else None
    new = await tenants.create_tenant(ctl, body.name, own)
    view = await tenants.show_tenant(ctl, new.tenant.id)
    return AdminTenantCreated(tenant=_tenant(view), api_key=new.key, api_key_prefix=new.key_prefix)


@router.get(
    "/tenants/{tenant_id}",
    responses=_NOT_FOUND,
    summary="One tenant: its status, limits and usage of today and this month",
)
async def show_tenant(tenant_id: str, ctl: Control) -> AdminTenantOut:
    return _tenant(await tenants.show_tenant(ctl, tenant_id))


@router.patch(
    "/tenants/{tenant_id}",
    responses={**_NOT_FOUND, 422: {"model": ProblemOut}},
    summary="Change a tenant's rate limit and quotas",
)
async def update_tenant(tenant_id: str, body: AdminTenantPatch, ctl: Control) -> AdminTenantOut:
    """Only the fields given in ``limits`` change: a number sets the tenant's own value (0:
    unlimited), null puts the ``[limits]`` default back. Applies at once in the worker
    process that serves the request and within ``[api] key_cache_ttl`` in the node's
    other workers and on the other nodes."""
    tenant = await tenants.find_tenant(ctl, id=tenant_id)
    return _tenant(await tenants.set_limits(ctl, tenant, body.limits.changes()))


@router.post(
    "/tenants/{tenant_id}/pause",
    responses=_NOT_FOUND,
    summary="Pause a tenant: new mail refused, queued mail held",
)
async def pause_tenant(
    tenant_id: str, ctl: Control, body: TenantPauseIn | None = None
) -> AdminTenantOut:
    """Idempotent: pausing a paused tenant changes nothing (the audit entry says so)."""
    tenant = await tenants.find_tenant(ctl, id=tenant_id)
    change = await tenants.pause(ctl, tenant, reason=body.reason if body else "")
    return _tenant(change.view)


@router.post(
    "/tenants/{tenant_id}/resume",
    responses=_NOT_FOUND,
    summary="Resume a paused (or warned) tenant",
)
async def resume_tenant(tenant_id: str, ctl: Control) -> AdminTenantOut:
    """Held mail is sent again and new mail accepted; the tenant is judged on outcomes
    from now on. Idempotent like pause."""
    tenant = await tenants.find_tenant(ctl, id=tenant_id)
    return _tenant((await tenants.resume(ctl, tenant)).view)


@router.delete(
    "/tenants/{tenant_id}",
    responses=_NOT_FOUND,
    summary="Delete a tenant: its keys revoked, its queued mail cancelled",
)
async def delete_tenant(tenant_id: str, ctl: Control) -> AdminTenantDeleted:
    """Its sending stops at once on this node and within ``[api] key_cache_ttl`` on the
    others: its API keys are revoked, it is paused, its queued mail is cancelled (a
    ``cancelled`` event per recipient, a batch per transaction; what a request has no
    time for, the nodes finish by themselves) and its sender domains, webhooks and
    suppressions are removed. Its messages and events stay for the retention period.
    Its name is not reused. Deleting a deleted tenant cancels whatever is still queued."""
    tenant = await tenants.find_tenant(ctl, id=tenant_id, deleted=True)
    done = await tenants.delete(ctl, tenant)
    removed = done.removed
    return AdminTenantDeleted(
        id=done.tenant.id,
        name=done.tenant.name,
        deleted_at=iso(done.tenant.deleted_at) or "",
        changed=removed is not None,
        keys_revoked=removed.keys_revoked if removed else 0,
        domains_removed=removed.domains if removed else 0,
        webhooks_removed=removed.webhooks if removed else 0,
        cancelled=done.cancelled,
        remaining=done.remaining,
        suppressions_removed=done.suppressions,
    )


@router.get(
    "/tenants/{tenant_id}/keys", responses=_NOT_FOUND, summary="A tenant's API keys, revoked too"
)
async def list_keys(tenant_id: str, ctl: Control) -> AdminKeysOut:
    return AdminKeysOut(keys=[_key(k, ctl.config) for k in await keys.list_keys(ctl, tenant_id)])


@router.post(
    "/tenants/{tenant_id}/keys",
    status_code=201,
    responses={**_NOT_FOUND, 422: {"model": ProblemOut}},
    summary="Create an API key for a tenant, with scopes (shown once)",
)
async def create_key(
    tenant_id: str, ctl: Control, body: AdminKeyIn | None = None
) -> AdminKeyCreated:
    """Without scopes the key may do everything a tenant may (never use the admin API).
    ``rate_per_second`` and ``burst`` give the key a rate limit of its own, on top of its
    tenant's (a key per application, each with its share)."""
    new = await keys.create_key(
        ctl,
        tenant_id,
        name=body.name if body else "",
        scopes=body.scopes if body else None,
        rate=body.rate_per_second if body else None,
        burst=body.burst if body else None,
    )
    return AdminKeyCreated(key=_key(new.key, ctl.config), secret=new.secret)


@router.patch(
    "/tenants/{tenant_id}/keys/{key_id}",
    responses={**_NOT_FOUND, 422: {"model": ProblemOut}},
    summary="Change an API key's scopes or rate limit",
)
async def update_key(tenant_id: str, key_id: str, body: AdminKeyPatch, ctl: Control) -> AdminKeyOut:
    """Only the fields given change: ``rate_per_second`` and ``burst`` set the key's own
    rate limit (null puts the ``[limits] key_rate`` / ``key_burst`` default back),
    ``scopes`` its scopes (null: all of them). Applies at once in the worker process that
    serves the request and within ``[api] key_cache_ttl`` in the others and on other
    nodes. Audited with the key before and after."""
    return _key(await keys.update_key(ctl, tenant_id, key_id, body.changes()), ctl.config)


@router.delete(
    "/tenants/{tenant_id}/keys/{key_id}",
    responses=_NOT_FOUND,
    summary="Revoke a tenant's API key (refused at once here, within [api] key_cache_ttl "
    "on other nodes)",
)
async def revoke_key(tenant_id: str, key_id: str, ctl: Control) -> AdminKeyOut:
    return _key(await keys.revoke_key(ctl, tenant_id, key_id), ctl.config)


@router.get("/tokens", summary="Admin tokens, revoked ones too")
async def list_tokens(ctl: Control) -> AdminTokensOut:
    return AdminTokensOut(tokens=[_token(t) for t in await tokens.list_tokens(ctl)])


@router.post("/tokens", status_code=201, summary="Create an admin token (shown once)")
async def create_token(ctl: Control, body: AdminTokenIn | None = None) -> AdminTokenCreated:
    new = await tokens.create_token(ctl, body.name if body else "")
    t = new.token
    view = tokens.TokenView(
        t.id, t.name, t.prefix, "store", t.created_at, t.last_used_at, t.revoked_at
    )
    return AdminTokenCreated(token=_token(view), secret=new.secret)


@router.delete(
    "/tokens/{token_id}",
    responses={**_NOT_FOUND, 422: {"model": ProblemOut}},
    summary="Revoke an admin token (refused from the next request on)",
)
async def revoke_token(token_id: str, ctl: Control) -> AdminTokenOut:
    return _token(await tokens.revoke_token(ctl, token_id))


@router.get("/audit", summary="The audit log, oldest first, a page at a time")
async def audit_log(
    ctl: Control,
    tenant: Annotated[str | None, Query(description="Only this tenant's entries (its id).")] = None,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="next_after of the previous page.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 100,
) -> AuditOut:
    found = await audit.entries(ctl, tenant_id=tenant, after=after, limit=limit)
    return AuditOut(
        entries=[AuditEntryOut.of(e) for e in found],
        next_after=found[-1].id if len(found) == limit else None,
    )
