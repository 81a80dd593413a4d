"""What the engine shows of itself: throttle state per domain, sources and pools.

Views for the API (``GET /v1/queues/.../throttle``, the pools of a tenant) and the
metrics, read from what the engine knows already (an operator's listing never waits for
DNS) and from the throttle backend. Read-only: nothing here changes delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from postline.deliver.egress import Egress, Source
from postline.deliver.paths import SourcePaths
from postline.deliver.routing import Route
from postline.deliver.site import Site
from postline.errors import ThrottleError
from postline.throttle.base import ThrottleBackend

__all__ = ["pools_of", "route_state", "site_state", "sources_state"]


async def site_state(site: Site, throttle: ThrottleBackend) -> dict[str, Any]:
    """A site's rule, limits and throttle state, and how much it buffers."""
    try:
        status = await throttle.state(site.bucket)
    except ThrottleError:
        return {"rule": site.destination.rule.name, "unavailable": True}
    limits = site.destination.limits
    return {
        "rule": site.destination.rule.name,
        "key": site.destination.key,
        "rate_limit": limits.rate,
        "rate_factor": round(status.factor, 3),
        "connections": status.connections,
        "connection_limit": limits.connections,
        "suspended_for": round(status.suspended_for, 1),
        "buffered": len(site.buffer),
    }


async def route_state(route: Route | None, throttle: ThrottleBackend) -> dict[str, Any] | None:
    """The throttle state of a domain's route: its site's, or with several sources the
    state of each source's site towards it (None while no route is known)."""
    if route is None:
        return None
    if route.site is None:
        if route.target is None:
            return None
        target = route.target
        sources = {}
        for name, site in sorted(target.sites.items()):
            sources[name] = await site_state(site, throttle)
        return {"rule": target.base.rule.name, "sources": sources}
    return await site_state(route.site, throttle)


async def sources_state(paths: SourcePaths | None, only: Source) -> list[dict[str, Any]]:
    """Every egress source: name, address, EHLO name, weight, pools, warm-up progress
    and the destinations that block it now (see :meth:`SourcePaths.state`); without
    ``[[delivery.sources]]`` the implicit source ``only``."""
    if paths is not None:
        return await paths.state()
    return [
        {
            "name": only.name,
            "address": only.address,
            "ehlo": only.ehlo,
            "weight": only.weight,
            "pools": list(only.pools),
            "warmup": None,
            "blocked": [],
        }
    ]


def pools_of(
    egress: Egress,
    streams_config: Mapping[str, str],
    states: list[dict[str, Any]],
    tenant_id: str,
    tenant_name: str = "",
) -> list[dict[str, Any]]:
    """The IP pools a tenant's mail can leave from (shared ones and its dedicated ones),
    each with its streams and its sources' state (``states``: :func:`sources_state`)."""
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
