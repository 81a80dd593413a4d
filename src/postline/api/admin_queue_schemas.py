"""Request and response shapes of the admin API's queue views and actions
(``/admin/v1/queues``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AdminDomainQueueOut",
    "AdminQueueActionOut",
    "AdminQueueBounceIn",
    "AdminQueueNarrowIn",
    "AdminQueueResumeIn",
    "AdminQueueSelectorIn",
    "AdminQueueSuspendIn",
    "AdminQueuesOut",
    "AdminRerouteIn",
    "AdminRerouteOut",
    "AdminSiteQueueOut",
    "AdminSiteTenantOut",
    "AdminSiteThrottleOut",
    "AdminSitesOut",
    "AdminSuspensionOut",
    "AdminTenantQueueOut",
    "AdminUnroutedOut",
    "AdminWorkerOut",
]


class AdminQueueSelectorIn(BaseModel):
    """The queues an action applies to: a tenant's, a domain's, or one tenant's queue of
    a domain (at least one of the two)."""

    model_config = ConfigDict(extra="forbid")

    tenant: str | None = Field(None, description="A tenant's id.", examples=["tnt_01"])
    domain: str | None = Field(
        None, description="A recipient domain, exactly.", examples=["example.com"]
    )


class AdminQueueNarrowIn(AdminQueueSelectorIn):
    """A selection of queues, narrowed to the mail of one stream and/or one tag (retry-now
    and bounce)."""

    stream: str | None = Field(
        None,
        max_length=64,
        description="Only the mail of this stream (the message's 'stream').",
        examples=["broadcast"],
    )
    tag: str | None = Field(
        None,
        max_length=128,
        description="Only the mail carrying this tag (one of the message's 'tags').",
        examples=["newsletter-2024-06"],
    )


class AdminQueueResumeIn(AdminQueueSelectorIn):
    provider: str | None = Field(
        None,
        description="Instead of tenant and domain: end the reroute of this provider (a "
        "domain without tenant ends the domain's reroute too).",
        examples=["google"],
    )


class AdminRerouteIn(BaseModel):
    """Where a destination's mail goes for a while: a domain or a provider (exactly one)."""

    model_config = ConfigDict(extra="forbid")

    domain: str | None = Field(
        None, description="A recipient domain, exactly.", examples=["example.com"]
    )
    provider: str | None = Field(
        None,
        description="Every domain whose MX hosts match this throttle rule (e.g. 'google', "
        "'microsoft', a rule of yours), or one MX site as warm-up caps name it (e.g. "
        "'default:site=mx1.example.net').",
        examples=["google"],
    )
    host: str = Field(
        max_length=253,
        description="The relay: a host name or an IP address.",
        examples=["relay.example.net"],
    )
    port: int = Field(25, description="The relay's SMTP port.", examples=[25])
    duration: str = Field(
        description="How long, e.g. '30m' or '2h' (at most 30 days); then the mail goes "
        "where its route says again.",
        examples=["2h"],
    )
    reason: str = Field("", max_length=1000, description="Why (kept in the audit log).")


class AdminRerouteOut(BaseModel):
    id: str = Field(description="Names the reroute for DELETE /admin/v1/queues/reroute/{id}.")
    domain: str | None
    provider: str | None
    host: str
    port: int
    since: str
    until: str
    reason: str


class AdminQueueSuspendIn(AdminQueueNarrowIn):
    stream: str | None = Field(
        None,
        max_length=64,
        description="Refused (422, with why): a hold applies to whole queues, since the "
        "lease takes a queue's mail oldest due first without reading its messages.",
    )
    tag: str | None = Field(None, max_length=128, description="Refused, like stream.")
    duration: str | None = Field(
        None,
        description="How long, e.g. '30m' or '2h'; without it, until resumed.",
        examples=["30m"],
    )


class AdminQueueBounceIn(AdminQueueNarrowIn):
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
    rerouted: AdminRerouteOut | None = Field(
        description="The reroute of this domain in force, if any (a provider's reroute "
        "covers the domains whose MX hosts match it: see 'reroutes')."
    )
    tenants: list[AdminTenantQueueOut]


class AdminQueuesOut(BaseModel):
    queues: list[AdminDomainQueueOut]
    due_cap: int = Field(description="Recipients due now are counted up to this per queue.")
    next_after: str | None = Field(description="Pass as 'after' for the next page.")
    reroutes: list[AdminRerouteOut] = Field(
        description="Every reroute in force (domains and providers), oldest first."
    )


class AdminQueueActionOut(BaseModel):
    action: str
    tenant: str | None
    domain: str | None
    provider: str | None = None
    stream: str | None = None
    tag: str | None = None
    count: int = Field(description="Queued recipients the action held, resumed or changed.")
    until: str | None = None


class AdminSiteThrottleOut(BaseModel):
    """The state of one throttle bucket of a site: the node's (read from its throttle
    backend, which all its workers share; a fleet's on Redis), but ``buffered`` and
    ``barred_until``, which are the answering worker's."""

    source: str | None = Field(
        description="The egress source whose bucket this is ([[delivery.sources]]); null: "
        "the node's one implicit source."
    )
    key: str | None = Field(description="The bucket's key (with the source, if any).")
    unavailable: bool = Field(
        default=False, description="The throttle backend did not answer: the figures are null."
    )
    connections: int | None = Field(default=None, description="Connections open to the bucket now.")
    connection_limit: int | None = Field(default=None, description="The rule's limit; null: none.")
    rate_limit: float | None = Field(
        default=None, description="Messages per second the rule allows; null: unlimited."
    )
    rate_factor: float | None = Field(
        default=None,
        description="The adaptive slow-down now: 1.0 is the full rate, 0.5 half of it.",
    )
    suspended_until: str | None = Field(
        default=None, description="When the bucket's suspension (after repeated throttling) ends."
    )
    barred_until: str | None = Field(
        default=None,
        description="When the answering worker sends there again (a provider block, a "
        "suspension, every MX host down); null: not barred.",
    )
    buffered: int = Field(
        default=0, description="Recipients the answering worker holds ready for it."
    )


class AdminSiteTenantOut(BaseModel):
    tenant: str
    depth: int
    deferred: int
    due: int
    oldest_at: str | None
    domains: int = Field(description="The site's domains this tenant has queues of.")
    suspended: int = Field(description="Of those, how many hold this tenant's queue.")


class AdminSiteQueueOut(BaseModel):
    """The page's domains whose route leads to one throttle bucket: an MX site, or the
    rule-wide bucket of a provider (every Google-hosted domain shares 'google')."""

    key: str = Field(description="The bucket's key, the same on every node and worker.")
    provider: str = Field(
        description="The destination as a reroute's or a resume's 'provider' and the "
        "warm-up caps name it: a rule ('google') or one MX site "
        "('default:site=mx1.example.net').",
        examples=["google"],
    )
    rule: str = Field(description="The throttle rule that applies.")
    scope: str = Field(description="What shares the bucket: 'rule', 'site' or 'domain'.")
    relay: bool = Field(description="A static route or reroute: a relay, not MX hosts.")
    mx_sites: list[str] = Field(
        description="The MX sites (sets of mail exchangers) of the domains, as looked up."
    )
    domains: int = Field(description="Domains of this page routed here.")
    domain_names: list[str] = Field(description="The first of them, deepest first.")
    depth: int
    deferred: int
    due: int = Field(description="Due now (counted up to due_cap per queue).")
    oldest_at: str | None
    oldest_age: float | None = Field(description="Seconds since the oldest was queued.")
    suspended: int = Field(description="Domains whose every tenant queue is held.")
    rate_limit: float | None = Field(description="The rule's messages per second; null: none.")
    burst: int | None = Field(description="Messages an idle bucket sends at once.")
    connection_limit: int | None = Field(description="The rule's connections; null: none.")
    throttle: list[AdminSiteThrottleOut] = Field(
        description="The bucket's state per source: the implicit source's, or each source "
        "the answering worker has sent there through (empty: none yet)."
    )
    tenants: list[AdminSiteTenantOut] = Field(description="Each tenant's share, deepest first.")


class AdminUnroutedOut(BaseModel):
    domain: str
    reason: str = Field(
        description="'unknown': the answering worker does not know the route yet (looked "
        "up for the next view); 'failed': the lookup failed and 'reply' is what the "
        "domain's mail gets; 'no-delivery': this node does not deliver ([delivery] enabled = "
        "false)."
    )
    reply: str | None
    depth: int
    deferred: int
    due: int
    oldest_age: float | None


class AdminWorkerOut(BaseModel):
    node: str = Field(description="The answering node (worker) name.")
    index: int = Field(description="Which worker process of the node answered (from 0).")
    count: int = Field(description="The node's worker processes ([node] workers).")


class AdminSitesOut(BaseModel):
    sites: list[AdminSiteQueueOut] = Field(description="Deepest first.")
    unrouted: list[AdminUnroutedOut] = Field(description="The page's domains without a site.")
    domains: int = Field(description="Domains on this page, routed or not.")
    due_cap: int
    next_after: str | None = Field(
        description="Pass as 'after' for the next page of domains; a site whose domains "
        "span pages appears on each with that page's share."
    )
    worker: AdminWorkerOut = Field(
        description="Who answered: routes are learnt per worker, throttle state is the "
        "node's (see each state's fields)."
    )
