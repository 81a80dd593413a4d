"""What the engine shows of itself: throttle state per domain, sources and pools.

Views for the API (``GET /v1/queues/.../throttle``, the pools of a tenant) and the
metrics, read from what the engine knows already (an operator's listing never waits for
DNS) and from the throttle backend. Read-only: nothing here changes delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from postline.deliver.egress import Egress, Source
from postline.deliver.routing import Route, Target
from postline.deliver.site import Site
from postline.errors import ThrottleError
from postline.throttle.base import ThrottleBackend
from postline.throttle.rules import Destination

__all__ = ["pools_of", "route_state", "site_state", "sites_of"]


async def site_state(site: Site, throttle: ThrottleBackend) -> dict[str, Any]:
    """A site's rule, limits and throttle state, and how much it buffers."""
    return await _bucket_state(site.destination, len(site.buffer), throttle)


async def _bucket_state(
    dest: Destination, buffered: int, throttle: ThrottleBackend
) -> dict[str, Any]:
    try:
        status = await throttle.state(dest.key)
    except ThrottleError:
        return {"rule": dest.rule.name, "unavailable": True}
    limits = dest.limits
    return {
        "rule": dest.rule.name,
        "key": dest.key,
        "rate_limit": limits.rate,
        "rate_factor": round(status.factor, 3),
        "connections": status.connections,
        "connection_limit": limits.connections,
        "suspended_for": round(status.suspended_for, 1),
        "buffered": buffered,
    }


async def route_state(
    route: Route | None, throttle: ThrottleBackend, implicit: Source | None = None
) -> dict[str, Any] | None:
    """The throttle state of a domain's route (None while no route is known): the state of
    each source's site towards it, or, with the ``implicit`` source of a configuration
    without ``[[delivery.sources]]``, the state of its bucket alone."""
    if route is None or route.target is None:
        return None
    target = route.target
    if implicit is not None:
        site = target.sites.get(implicit.name)
        if site is not None:
            return await site_state(site, throttle)
        return await _bucket_state(target.base, 0, throttle)  # the same bucket, no site yet
    sources = {}
    for name, site in sorted(target.sites.items()):
        sources[name] = await site_state(site, throttle)
    return {"rule": target.base.rule.name, "sources": sources}


async def sites_of(
    routes: Mapping[str, Route | None],
    throttle: ThrottleBackend,
    implicit: Source | None,
    barred_until: Callable[[Source, Target, float], float],
    now: float,
) -> dict[str, Any]:
    """Each domain's MX site and throttle bucket as this engine knows them (``routes``:
    the known route of each domain, None when it has none), and each bucket's state.

    ``{"domains": {domain: view}, "buckets": {key: [state, ...]}}``: a view is
    ``{"status": "unknown"}`` (no route known), ``{"status": "failed", "reply": ...}``
    (the lookup failed) or ``{"status": "routed", "key": ..., "provider": ..., ...}``,
    ``key`` naming the destination's bucket (without source) in ``buckets``. Its states
    are one per source: the implicit source's (always, its bucket is the destination's
    own), or each source that has a site towards one of the domains here. The backend is
    read once per bucket; ``buffered`` sums this engine's sites of the bucket and
    ``barred_until`` is when this engine sends there again (a provider block, a suspension,
    every MX host down; 0.0: not barred)."""
    domains: dict[str, dict[str, Any]] = {}
    # base key -> source name -> (source, the source's destination, target, its sites)
    seen: dict[str, dict[str, tuple[Source, Destination, Target, set[Site]]]] = {}
    for domain, route in routes.items():
        if route is None:
            domains[domain] = {"status": "unknown"}
            continue
        target = route.target
        if target is None:
            domains[domain] = {"status": "failed", "reply": str(route.failure or "")}
            continue
        base = target.base
        limits = base.limits
        domains[domain] = {
            "status": "routed",
            "key": base.key,
            "provider": base.provider,
            "rule": base.rule.name,
            "scope": base.rule.scope,
            "mx_site": target.site_name,
            "relay": target.relay,
            "rate_limit": limits.rate,
            "burst": limits.effective_burst if limits.rate is not None else None,
            "connection_limit": limits.connections,
        }
        by_source = seen.setdefault(base.key, {})
        if implicit is not None and implicit.name not in target.sites:
            by_source.setdefault(implicit.name, (implicit, base, target, set()))
        for name, site in target.sites.items():
            entry = by_source.setdefault(name, (site.source, site.destination, target, set()))
            entry[3].add(site)
    buckets: dict[str, list[dict[str, Any]]] = {}
    for key, by_source in seen.items():
        states = []
        for name, (source, dest, target, sites) in sorted(by_source.items()):
            state = await _bucket_state(dest, sum(len(s.buffer) for s in sites), throttle)
            state["source"] = None if source.implicit else name
            state["barred_until"] = barred_until(source, target, now)
            states.append(state)
        buckets[key] = states
    return {"domains": domains, "buckets": buckets}


def pools_of(
    egress: Egress,
    streams_config: Mapping[str, str],
    states: list[dict[str, Any]],
    tenant_id: str,
    tenant_name: str = "",
) -> list[dict[str, Any]]:
    """The IP pools a tenant's mail can leave from (shared ones and its dedicated ones),
    each with its streams and its sources' state (``states``: :meth:`SourcePaths.state
    <postline.deliver.paths.SourcePaths.state>`)."""
    by_name = {s["name"]: s for s in states}
    streams: dict[str, list[str]] = {}
    for stream, pool_name in streams_config.items():
        streams.setdefault(pool_name, []).append(stream)
    out = []
    for pool in egress.pools.values():
        if pool.tenant and pool.tenant not in (tenant_id, tenant_name):
            continue
        out.append(
            {
                "name": pool.name,
                "dedicated": bool(pool.tenant),
                "streams": sorted(streams.get(pool.name, [])),
                "sources": [by_name[s.name] for s in pool.sources if s.name in by_name],
            }
        )
    return out
