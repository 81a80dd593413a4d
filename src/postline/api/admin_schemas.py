"""Request and response shapes of the admin API (``/admin/v1``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from postline.api.schemas import UsageOut
from postline.model.times import iso
from postline.store.base import AuditEntry

__all__ = [
    "ActorOut",
    "AdminKeyCreated",
    "AdminKeyIn",
    "AdminKeyLimitsOut",
    "AdminKeyOut",
    "AdminKeyPatch",
    "AdminKeysOut",
    "AdminTenantCreated",
    "AdminTenantDeleted",
    "AdminTenantIn",
    "AdminTenantLimitsIn",
    "AdminTenantLimitsOut",
    "AdminTenantOut",
    "AdminTenantPatch",
    "AdminTenantStatusOut",
    "AdminTenantsOut",
    "AdminTokenCreated",
    "AdminTokenIn",
    "AdminTokenOut",
    "AdminTokensOut",
    "AuditEntryOut",
    "AuditOut",
    "TenantAuditOut",
    "TenantPauseIn",
]

_MAX = 1_000_000_000


class AdminTenantLimitsIn(BaseModel):
    """A tenant's own limits. A field left out is not changed (on create: the default); null
    puts it back to the ``[limits]`` default; 0 means unlimited."""

    model_config = ConfigDict(extra="forbid")

    rate_per_second: int | None = Field(
        None,
        ge=0,
        le=_MAX,
        description="Recipients per second the tenant may submit, HTTP and SMTP together (a "
        "message to N recipients counts N); held across the fleet.",
    )
    burst: int | None = Field(
        None,
        ge=0,
        le=_MAX,
        description="Recipients an idle tenant may submit at once (0: one second's worth).",
    )
    daily_quota: int | None = Field(
        None, ge=0, le=_MAX, description="Recipients accepted per UTC calendar day."
    )
    monthly_quota: int | None = Field(
        None, ge=0, le=_MAX, description="Recipients accepted per UTC calendar month."
    )

    def changes(self) -> dict[str, int | None]:
        """The fields given, by the control layer's names."""
        names = {
            "rate_per_second": "rate",
            "burst": "burst",
            "daily_quota": "daily",
            "monthly_quota": "monthly",
        }
        return {names[f]: getattr(self, f) for f in self.model_fields_set}


class AdminTenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        max_length=64, description="1-64 letters, digits, '.', '_' or '-'; unique; the SMTP user."
    )
    limits: AdminTenantLimitsIn | None = Field(
        None, description="The tenant's own limits (left out: the [limits] defaults)."
    )


class AdminTenantPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limits: AdminTenantLimitsIn = Field(
        description="The limits to change; fields left out stay as they are."
    )


class TenantPauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        "", max_length=1000, description="Why; shown to the tenant in every refusal."
    )


class AdminTenantStatusOut(BaseModel):
    status: str = Field(description="'ok', 'warned' or 'paused'.")
    reason: str
    changed_at: str | None = Field(description="When the status last changed (null: never).")
    changed_by: str | None = Field(description="'reputation' (automatic) or 'operator'.")


class AdminTenantLimitsOut(BaseModel):
    rate_per_second: int = Field(description="Recipients per second (0: unlimited).")
    burst: int = Field(description="Recipients at once from an idle bucket.")
    daily_quota: int = Field(description="Recipients per UTC day (0: unlimited).")
    monthly_quota: int = Field(description="Recipients per UTC month (0: unlimited).")
    overridden: list[str] = Field(
        description="The fields the tenant has its own value for; the others are the "
        "[limits] defaults."
    )


class AdminTenantOut(BaseModel):
    id: str
    name: str
    created_at: str
    status: AdminTenantStatusOut
    limits: AdminTenantLimitsOut
    usage: UsageOut | None = Field(
        description="Recipients accepted today and this month (null in the list of tenants)."
    )


class AdminTenantsOut(BaseModel):
    tenants: list[AdminTenantOut]


class AdminTenantDeleted(BaseModel):
    id: str
    name: str
    deleted_at: str
    changed: bool = Field(description="False: it had been deleted before this request.")
    keys_revoked: int
    domains_removed: int = Field(description="Sender domains removed (with their DKIM keys).")
    webhooks_removed: int
    cancelled: int = Field(description="Queued recipients this request cancelled.")
    remaining: int = Field(
        description="Queued recipients left to cancel when the request ended: the nodes "
        "cancel them by themselves (within [queue] scan_interval)."
    )
    suppressions_removed: int = Field(description="Suppressions (and soft-bounce runs) removed.")


class AdminTenantCreated(BaseModel):
    tenant: AdminTenantOut
    api_key: str = Field(
        description="The tenant's first API key: shown once (only its hash is kept). It is "
        "the Bearer token of /v1 and the SMTP AUTH password."
    )
    api_key_prefix: str = Field(description="The start of the key, to name it later.")


class AdminKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=100, description="What the key is for.")
    scopes: list[str] | None = Field(
        None,
        description="Some of 'send', 'read', 'suppressions', 'domains', 'webhooks'; "
        "left out or null: all of them.",
    )
    rate_per_second: int | None = Field(
        None,
        ge=0,
        le=_MAX,
        description="The key's own rate limit in recipients per second, on top of its "
        "tenant's (null: [limits] key_rate; 0: none).",
    )
    burst: int | None = Field(
        None, ge=0, le=_MAX, description="Its burst (null: [limits] key_burst; 0: one second's)."
    )


class AdminKeyPatch(BaseModel):
    """What to change of a live key; a field left out is not changed."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[str] | None = Field(
        None,
        description="Some of 'send', 'read', 'suppressions', 'domains', 'webhooks'; null: all "
        "of them.",
    )
    rate_per_second: int | None = Field(
        None,
        ge=0,
        le=_MAX,
        description="The key's own rate limit in recipients per second, on top of its "
        "tenant's (null: back to [limits] key_rate; 0: none).",
    )
    burst: int | None = Field(
        None,
        ge=0,
        le=_MAX,
        description="Its burst (null: back to [limits] key_burst; 0: one second's).",
    )

    def changes(self) -> dict[str, Any]:
        """The fields given, by the control layer's names."""
        names = {"scopes": "scopes", "rate_per_second": "rate", "burst": "burst"}
        return {names[f]: getattr(self, f) for f in self.model_fields_set}


class AdminKeyLimitsOut(BaseModel):
    rate_per_second: int = Field(description="The key's own rate (0: none but its tenant's).")
    burst: int
    overridden: list[str] = Field(
        description="The fields the key has its own value for; the others are the [limits] "
        "key defaults."
    )


class AdminKeyOut(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The start of the key: names it, reveals nothing.")
    scopes: list[str] = Field(description="What the key may do on /v1 and over SMTP.")
    limits: AdminKeyLimitsOut
    created_at: str
    last_used_at: str | None = Field(description="Noted at most once a minute.")
    revoked_at: str | None


class AdminKeysOut(BaseModel):
    keys: list[AdminKeyOut]


class AdminKeyCreated(BaseModel):
    key: AdminKeyOut
    secret: str = Field(
        description="The key: shown once (only its hash is kept). It is the Bearer token of "
        "/v1 and the SMTP AUTH password."
    )


class AdminTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=100, description="What the token is for.")


class AdminTokenOut(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The start of the token (empty for config tokens).")
    source: str = Field(description="'store', or 'config' for a hash in [admin] tokens.")
    created_at: str | None
    last_used_at: str | None = Field(description="Noted at most once a minute.")
    revoked_at: str | None


class AdminTokensOut(BaseModel):
    tokens: list[AdminTokenOut]


class AdminTokenCreated(BaseModel):
    token: AdminTokenOut
    secret: str = Field(description="The token: shown once (only its hash is kept).")


class ActorOut(BaseModel):
    kind: str = Field(
        description="'admin_token', 'config_token', 'tenant_key', 'cli' or 'node' (a node "
        "by itself, e.g. lifting a suspension whose time is up)."
    )
    id: str


class AuditEntryOut(BaseModel):
    id: int
    at: str
    actor: ActorOut
    tenant_id: str | None
    action: str = Field(description="'<object>.<verb>', e.g. 'tenant.pause'.")
    target: str = Field(description="The id of the object acted on.")
    request_id: str = Field(description="The X-Request-Id of the request (empty: CLI).")
    detail: dict[str, Any] = Field(description="What changed; never a secret.")

    @classmethod
    def of(cls, e: AuditEntry) -> AuditEntryOut:
        return cls(
            id=e.id,
            at=iso(e.at),
            actor=ActorOut(kind=e.actor_kind, id=e.actor_id),
            tenant_id=e.tenant_id,
            action=e.action,
            target=e.target,
            request_id=e.request_id,
            detail=e.detail,
        )


class AuditOut(BaseModel):
    entries: list[AuditEntryOut]
    next_after: int | None = Field(description="Pass as ?after= for the next page.")


class TenantAuditOut(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null: this was the last."
    )
