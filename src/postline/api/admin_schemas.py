"""Request and response shapes of the admin API (``/admin/v1``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ActorOut",
    "AdminKeyCreated",
    "AdminKeyIn",
    "AdminKeyOut",
    "AdminKeysOut",
    "AdminTenantCreated",
    "AdminTenantIn",
    "AdminTenantOut",
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


class AdminTenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        max_length=64, description="1-64 letters, digits, '.', '_' or '-'; unique; the SMTP user."
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


class AdminTenantOut(BaseModel):
    id: str
    name: str
    created_at: str
    status: AdminTenantStatusOut


class AdminTenantsOut(BaseModel):
    tenants: list[AdminTenantOut]


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


class AdminKeyOut(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The start of the key: names it, reveals nothing.")
    scopes: list[str] = Field(description="What the key may do on /v1 and over SMTP.")
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
    kind: str = Field(description="'admin_token', 'config_token', 'tenant_key' or 'cli'.")
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


class AuditOut(BaseModel):
    entries: list[AuditEntryOut]
    next_after: int | None = Field(description="Pass as ?after= for the next page.")


class TenantAuditOut(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null: this was the last."
    )
