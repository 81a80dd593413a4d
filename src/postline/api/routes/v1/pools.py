"""/v1/ip-pools: the IP pools the tenant's mail leaves from, with warm-up progress."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Request

from postline.api.context import ApiContext, require
from postline.api.problems import Problem
from postline.api.schemas import ProblemOut
from postline.store.base import Tenant

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["ip-pools"])

PoolsOf = Callable[[str, str], Awaitable[list[dict[str, Any]]]]


@router.get(
    "/ip-pools",
    responses={
        401: {"model": ProblemOut, "description": "Missing or invalid API key"},
        503: {"model": ProblemOut, "description": "Delivery is switched off on this node"},
    },
    summary="IP pools, sources and warm-up progress",
)
async def ip_pools(request: Request, tenant: Annotated[Tenant, require("read")]) -> dict[str, Any]:
    """The pools the tenant's mail can leave from — the shared ones and those dedicated
    to it — with the streams mapped to each, and per source: address, EHLO name, weight,
    warm-up (schedule, day of the plan, today's and this hour's count against the caps
    per destination) and the destinations blocking it now."""
    ctx: ApiContext = request.app.state.ctx
    pools_of: PoolsOf | None = ctx.extra.get("pools_of")
    if pools_of is None:
        raise Problem(
            503, "unavailable", "Delivery is switched off on this node: it has no IP pools."
        )
    return {"pools": await pools_of(tenant.id, tenant.name)}
