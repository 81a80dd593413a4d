"""Request and response shapes of the admin API's queue views and actions
(``/admin/v1/queues``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AdminDomainQueueOut",
    "AdminQueueActionOut",
    "AdminQueueBounceIn",
    "AdminQueueSelectorIn",
    "AdminQueueSuspendIn",
    "AdminQueuesOut",
    "AdminSuspensionOut",
    "AdminTenantQueueOut",
]


class AdminQueueSelectorIn(BaseModel):
    """The queues an action applies to: a tenant's, a domain's, or one tenant's queue of
    a domain (at least one of the two)."""

    model_config = ConfigDict(extra="forbid")

    tenant: str | None = Field(None, description="A tenant's id.", examples=["tnt_01"])
    domain: str | None = Field(
        None, description="A recipient domain, exactly.", examples=["example.com"]
    )


class AdminQueueSuspendIn(AdminQueueSelectorIn):
    duration: str | None = Field(
        None,
        description="How long, e.g. '30m' or '2h'; without it, until resumed.",
        examples=["30m"],
    )


class AdminQueueBounceIn(AdminQueueSelectorIn):
    reason: str = Field(
        "",
        max_length=1000,
        description="Why; the text of every bounced event (category 'operator').",
        examples=["destination retired"],
    )


class AdminSuspensionOut(BaseModel):
    tenant: str = Field(description="A tenant's id, or '*': every tenant.")
    domain: str = Field(description="A domain, or '*': every domain of the tenant.")
    since: str
    until: str | None = Field(description="When it is lifted; null: until resumed.")
    reason: str = Field(description="'operator' (this API), 'api' (a tenant), or a pause's.")


class AdminTenantQueueOut(BaseModel):
    tenant: str
    depth: int
    deferred: int = Field(description="Queued recipients attempted at least once.")
    due: int = Field(description="Due now and not being delivered (counted up to due_cap).")
    oldest_at: str | None
    next_attempt_at: str | None
    suspended: AdminSuspensionOut | None


class AdminDomainQueueOut(BaseModel):
    domain: str
    depth: int
    deferred: int
    due: int
    oldest_at: str | None
    oldest_age: float | None = Field(description="Seconds since the oldest was queued.")
    suspended: bool = Field(description="Every listed tenant's queue is held.")
    suspensions: list[AdminSuspensionOut]
    tenants: list[AdminTenantQueueOut]


class AdminQueuesOut(BaseModel):
    queues: list[AdminDomainQueueOut]
    due_cap: int = Field(description="Recipients due now are counted up to this per queue.")
    next_after: str | None = Field(description="Pass as 'after' for the next page.")


class AdminQueueActionOut(BaseModel):
    action: str
    tenant: str | None
    domain: str | None
    count: int = Field(description="Queued recipients the action held, released or changed.")
    until: str | None = None
