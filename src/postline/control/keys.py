"""A tenant's API keys: made with scopes, listed, changed and revoked.

A key is the tenant's Bearer token on /v1 and its SMTP AUTH password; its scopes
(:data:`postline.tenants.SCOPES`) say which routes it may use. A key made without
naming scopes has them all. Its own rate limit (``rate``, ``burst``) holds on top of its
tenant's. Changing a key's scopes or rate limit, or revoking it, applies on the node that
serves the request at once, and on the others within ``[api] key_cache_ttl`` (each node
reads a key's scopes and limit with its identity, cached that long).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from postline.control import audit
from postline.control.context import ControlContext
from postline.control.tenants import check_limit, find_tenant
from postline.errors import NotFound, ValidationError
from postline.store.base import ApiKey
from postline.tenants import SCOPES, generate_key, hash_key, key_prefix

__all__ = [
    "KEY_FIELDS",
    "NewKey",
    "check_scopes",
    "create_key",
    "list_keys",
    "revoke_key",
    "update_key",
]

KEY_FIELDS = ("scopes", "rate", "burst")
"""What :func:`update_key` changes of a live key."""


@dataclass(frozen=True, slots=True)
class NewKey:
    key: ApiKey
    secret: str
    """The key itself: shown once, never stored."""


def check_scopes(scopes: Sequence[str] | None) -> tuple[str, ...] | None:
    """The scopes to store, sorted without repeats (None: every tenant scope)."""
    if scopes is None:
        return None
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValidationError(
            f"unknown scope {unknown[0]!r}",
            field="scopes",
            fix=f"Use some of: {', '.join(SCOPES)} (or leave scopes out for all of them).",
        )
    if not scopes:
        raise ValidationError(
            "a key needs at least one scope",
            field="scopes",
            fix=f"Name some of: {', '.join(SCOPES)} (or leave scopes out for all of them).",
        )
    return tuple(sorted(set(scopes)))


def _scopes(key: ApiKey) -> list[str]:
    return list(SCOPES) if key.scopes is None else list(key.scopes)


async def create_key(
    ctx: ControlContext,
    tenant_id: str,
    *,
    name: str = "",
    scopes: Sequence[str] | None = None,
    rate: int | None = None,
    burst: int | None = None,
) -> NewKey:
    """Make a key for the tenant; the secret is in the answer only. ``rate`` and
    ``burst``: the key's own rate limit on top of its tenant's (None: ``[limits]
    key_rate`` / ``key_burst``; rate 0: none)."""
    wanted = check_scopes(scopes)
    check_limit("rate", rate)
    check_limit("burst", burst)
    tenant = await find_tenant(ctx, id=tenant_id)
    secret = generate_key()
    key = await ctx.store.add_api_key(
        tenant.id,
        hash_key(secret),
        key_prefix(secret),
        name=name.strip()[:100],
        scopes=wanted,
        rate=rate,
        burst=burst,
    )
    await audit.record(
        ctx,
        "api_key.create",
        key.id,
        tenant_id=tenant.id,
        detail={
            "name": key.name,
            "prefix": key.prefix,
            "scopes": _scopes(key),
            "rate": key.rate,
            "burst": key.burst,
        },
    )
    return NewKey(key, secret)


async def list_keys(ctx: ControlContext, tenant_id: str) -> list[ApiKey]:
    """The tenant's keys, revoked ones too, oldest first."""
    tenant = await find_tenant(ctx, id=tenant_id)
    return await ctx.store.api_keys(tenant.id)


async def revoke_key(ctx: ControlContext, tenant_id: str, key_id: str) -> ApiKey:
    """Revoke a live key of the tenant (the serving node forgets it at once)."""
    tenant = await find_tenant(ctx, id=tenant_id)
    if not await ctx.store.revoke_api_key_id(tenant.id, key_id, now=time.time()):
        raise NotFound(f"tenant {tenant.name!r} has no live API key with id {key_id!r}")
    if ctx.on_key_revoked is not None:
        ctx.on_key_revoked()
    key = next(k for k in await ctx.store.api_keys(tenant.id) if k.id == key_id)
    await audit.record(
        ctx,
        "api_key.revoke",
        key.id,
        tenant_id=tenant.id,
        detail={"name": key.name, "prefix": key.prefix, "scopes": _scopes(key)},
    )
    return key


def _state(key: ApiKey) -> dict[str, Any]:
    return {"scopes": _scopes(key), "rate": key.rate, "burst": key.burst}


async def update_key(
    ctx: ControlContext, tenant_id: str, key_id: str, changes: Mapping[str, Any]
) -> ApiKey:
    """Change some of a live key's :data:`KEY_FIELDS`; the others stay. ``rate`` and
    ``burst``: a number sets the key's own (0 rate: none but its tenant's), None puts the
    ``[limits] key_rate`` / ``key_burst`` default back; ``scopes``: a list of scopes, None
    for all of them. Audited with the key before and after, also when nothing changed."""
    unknown = sorted(set(changes) - set(KEY_FIELDS))
    if unknown:
        raise ValidationError(
            f"unknown key field {unknown[0]!r}",
            field=unknown[0],
            fix=f"Use some of: {', '.join(KEY_FIELDS)}.",
        )
    for field in ("rate", "burst"):
        if field in changes:
            check_limit(field, changes[field])
    tenant = await find_tenant(ctx, id=tenant_id)
    before = next(
        (k for k in await ctx.store.api_keys(tenant.id) if k.id == key_id and not k.revoked_at),
        None,
    )
    if before is None:
        raise NotFound(f"tenant {tenant.name!r} has no live API key with id {key_id!r}")
    scopes = check_scopes(changes["scopes"]) if "scopes" in changes else before.scopes
    rate = changes.get("rate", before.rate)
    burst = changes.get("burst", before.burst)
    changed = (scopes, rate, burst) != (before.scopes, before.rate, before.burst)
    if changed:
        if not await ctx.store.update_api_key(
            tenant.id, key_id, scopes=scopes, rate=rate, burst=burst
        ):
            raise NotFound(f"tenant {tenant.name!r} has no live API key with id {key_id!r}")
        if ctx.on_key_revoked is not None:
            ctx.on_key_revoked()
    after = next(k for k in await ctx.store.api_keys(tenant.id) if k.id == key_id)
    await audit.record(
        ctx,
        "api_key.update",
        key_id,
        tenant_id=tenant.id,
        detail={
            "name": after.name,
            "prefix": after.prefix,
            "previous": _state(before),
            "key": _state(after),
            "changed": changed,
        },
    )
    return after
