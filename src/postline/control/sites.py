"""Queues across tenants per MX site and provider: the destination domains of a page of
the queue view (:func:`postline.control.queues.list_queues`) grouped by the throttle
bucket their route leads to, with the bucket's state.

A domain's site is known only once its route is looked up (its MX hosts, matched to a
throttle rule: :mod:`postline.deliver.routing`), and routes are learnt per worker
process, lazily, by the engine that delivers the domain or first sends fresh mail to it.
The view asks the serving worker's engine (``sites_of``) for the routes of the page's
domains, letting it look up those it does not know for at most :data:`ROUTE_WAIT`
seconds in all (none with ``resolve`` off: they are looked up in the background for the
next view). A route is the same in every worker (DNS, the rules and the reroutes), and a
bucket's state (connections, rate, slow-down, suspension) is read from the node's
throttle backend, which every worker shares (and every node, on Redis): so one worker
answers for the node. Only ``buffered`` and ``barred_until`` are that worker's own. Domains
whose route is still unknown, or whose lookup failed, are listed apart (``unrouted``).

The grouping is per page: a site whose domains fall on several pages of the domain list
appears on each with that page's share (merge the rows by ``key`` for the whole queue).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from postline.control.context import ControlContext
from postline.control.queues import DomainQueues, list_queues

__all__ = [
    "ROUTE_WAIT",
    "SHOWN_DOMAINS",
    "SiteQueues",
    "SitesOf",
    "SitesPage",
    "TenantShare",
    "UnroutedDomain",
    "group_sites",
    "list_sites",
]

ROUTE_WAIT = 2.0
"""The longest a view waits for the routes its worker does not know yet (seconds)."""
SHOWN_DOMAINS = 10
"""Domains named per site (all are counted)."""

SitesOf = Callable[[Sequence[str], float], Awaitable[Mapping[str, Any]]]
"""The serving engine's view of domains' sites: ``(domains, seconds to wait for unknown
routes)`` → ``{"domains": {...}, "buckets": {...}}`` (see
``postline.deliver.status.sites_of``)."""


@dataclass(slots=True)
class TenantShare:
    """One tenant's queues of a site's domains, summed."""

    tenant_id: str
    depth: int = 0
    deferred: int = 0
    due: int = 0
    oldest_at: float | None = None
    domains: int = 0
    suspended: int = 0
    """Of those domains, how many hold this tenant's queue."""


@dataclass(slots=True)
class SiteQueues:
    """The domains of a page routed to one throttle bucket (an MX site, or a provider's
    rule-wide bucket), their queues summed, and the bucket's state."""

    key: str
    provider: str
    rule: str
    scope: str
    relay: bool
    rate_limit: float | None
    burst: int | None
    connection_limit: int | None
    domains: list[DomainQueues] = field(default_factory=list)
    mx_sites: list[str] = field(default_factory=list)
    throttle: list[dict[str, Any]] = field(default_factory=list)
    """One state per source (see ``postline.deliver.status.sites_of``)."""

    @property
    def depth(self) -> int:
        return sum(d.depth for d in self.domains)

    @property
    def deferred(self) -> int:
        return sum(d.deferred for d in self.domains)

    @property
    def due(self) -> int:
        return sum(d.due for d in self.domains)

    @property
    def oldest_at(self) -> float | None:
        return min((t for d in self.domains if (t := d.oldest_at) is not None), default=None)

    @property
    def suspended(self) -> int:
        """Domains of the site whose every listed tenant queue is held."""
        return sum(1 for d in self.domains if d.suspended)

    @property
    def tenants(self) -> list[TenantShare]:
        """Each tenant's share, deepest first."""
        shares: dict[str, TenantShare] = {}
        for d in self.domains:
            for t in d.tenants:
                q = t.queue
                share = shares.setdefault(q.tenant_id, TenantShare(q.tenant_id))
                share.depth += q.depth
                share.deferred += q.deferred
                share.due += q.due
                share.domains += 1
                share.suspended += t.suspended is not None
                if q.depth and (share.oldest_at is None or q.oldest_at < share.oldest_at):
                    share.oldest_at = q.oldest_at
        return sorted(shares.values(), key=lambda s: (-s.depth, s.tenant_id))


@dataclass(frozen=True, slots=True)
class UnroutedDomain:
    """A domain of the page without a site: its route is not known to the serving worker
    (``unknown``), its lookup failed (``failed``, with the reply its mail gets), or the
    node does not deliver (``no-delivery``: ``[delivery] enabled = false``)."""

    queues: DomainQueues
    reason: str
    reply: str = ""


@dataclass(frozen=True, slots=True)
class SitesPage:
    sites: list[SiteQueues]
    unrouted: list[UnroutedDomain]
    domains: int
    """Domains on the page (routed or not)."""
    next_after: str | None


def group_sites(
    page: Sequence[DomainQueues], view: Mapping[str, Any], *, unknown: str = "unknown"
) -> SitesPage:
    """Group ``page``'s domains by the bucket ``view`` (an engine's ``sites_of`` answer)
    routes them to: sites deepest first (then by key), unrouted domains in name order
    (``unknown``: the reason given for a domain the view does not route)."""
    routes: Mapping[str, Mapping[str, Any]] = view.get("domains", {})
    buckets: Mapping[str, list[dict[str, Any]]] = view.get("buckets", {})
    sites: dict[str, SiteQueues] = {}
    unrouted: list[UnroutedDomain] = []
    for d in page:
        route = routes.get(d.domain) or {"status": unknown}
        if route.get("status") != "routed":
            status = "failed" if route.get("status") == "failed" else unknown
            unrouted.append(UnroutedDomain(d, status, str(route.get("reply") or "")))
            continue
        key = str(route["key"])
        site = sites.get(key)
        if site is None:
            site = sites[key] = SiteQueues(
                key=key,
                provider=str(route["provider"]),
                rule=str(route["rule"]),
                scope=str(route["scope"]),
                relay=bool(route.get("relay")),
                rate_limit=route.get("rate_limit"),
                burst=route.get("burst"),
                connection_limit=route.get("connection_limit"),
                throttle=list(buckets.get(key, [])),
            )
        site.domains.append(d)
        mx_site = str(route.get("mx_site") or "")
        if mx_site and mx_site not in site.mx_sites:
            site.mx_sites.append(mx_site)
    ordered = sorted(sites.values(), key=lambda s: (-s.depth, s.key))
    unrouted.sort(key=lambda u: u.queues.domain)
    return SitesPage(ordered, unrouted, len(page), None)


async def list_sites(
    ctx: ControlContext,
    sites_of: SitesOf | None,
    *,
    tenant_id: str | None = None,
    after: str = "",
    limit: int = 100,
    resolve: bool = True,
) -> SitesPage:
    """One page of destination domains (as :func:`list_queues` pages them, after
    ``after``), grouped by MX site / throttle bucket as the serving engine routes them
    (``sites_of`` None: a node that does not deliver; every domain is unrouted)."""
    page, next_after = await list_queues(ctx, tenant_id=tenant_id, after=after, limit=limit)
    view: Mapping[str, Any] = {}
    if sites_of is not None and page:
        view = await sites_of([d.domain for d in page], ROUTE_WAIT if resolve else 0.0)
    grouped = group_sites(page, view, unknown="unknown" if sites_of else "no-delivery")
    return SitesPage(grouped.sites, grouped.unrouted, grouped.domains, next_after)
