"""What the engine shows of itself: throttle state per domain, sources and pools.

Views for the API (``GET /v1/queues/.../throttle``, the pools of a tenant) and the
metrics, read from what the engine knows already (an operator's listing never waits for
DNS) and from the throttle backend. Read-only: nothing here changes delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from postline.deliver.egress import Egress, Source
from postline.deliver.routing import Route
from postline.deliver.site import Site
from postline.errors import ThrottleError
from postline.throttle.base import ThrottleBackend
from postline.throttle.rules import Destination

__all__ = ["pools_of", "route_state", "site_state"]


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
