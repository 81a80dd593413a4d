"""/v1/queues: per-domain depth, age, throttle state; pause and resume."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from postline.api.context import ApiContext, require, tenant_control
from postline.api.problems import Problem
from postline.api.schemas import ProblemOut, QueueOut, QueuesOut, iso
from postline.control import queues
from postline.ingest.addresses import InvalidAddress, parse_address
from postline.store.base import QueueStat, Tenant

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["queues"])


def _domain(value: str) -> str:
    try:
        return parse_address(f"postmaster@{value}").domain
    except InvalidAddress:
        raise Problem(
            422,
            "validation",
            f"{value!r} is not a domain name.",
            fix="Use the recipient domain as it appears in GET /v1/queues, e.g. 'example.com'.",
            errors=[{"field": "domain", "message": "not a domain"}],
        ) from None


async def _queue(ctx: ApiContext, s: QueueStat) -> dict[str, Any]:
    throttle = await ctx.throttle_state(s.domain) if ctx.throttle_state else None
    return {
        "domain": s.domain,
        "depth": s.depth,
        "deferred": s.deferred,
        "oldest_at": iso(s.oldest_at) if s.depth else None,
        "next_attempt_at": iso(s.next_attempt_at) if s.depth else None,
        "paused": s.paused,
        "throttle": throttle,
    }


@router.get(
    "/queues",
    response_model=QueuesOut,
    responses={401: {"model": ProblemOut}},
    summary="This tenant's queue per recipient domain",
)
async def list_queues(
    request: Request,
    tenant: Annotated[Tenant, require("read")],
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> Response:
    """Queues in domain order, a page at a time (read from counters: the cost follows the
    page, not the depth of the queue)."""
    ctx: ApiContext = request.app.state.ctx
    stats = await ctx.store.queue_stats(tenant.id, after=cursor or "", limit=limit + 1)
    page = stats[:limit]
    body = {
        "queues": [await _queue(ctx, s) for s in page],
        "next_cursor": page[-1].domain if len(stats) > limit else None,
    }
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


async def _set(request: Request, tenant: Tenant, domain: str, paused: bool) -> Response:
    ctx: ApiContext = request.app.state.ctx
    name = _domain(domain)
    await queues.hold(tenant_control(request, tenant), tenant.id, name, paused)
    found = await ctx.store.queue_stats(tenant.id, domain=name)
    stat = found[0] if found else QueueStat(name, 0, 0, 0.0, 0.0, paused)
    return Response(json.dumps(await _queue(ctx, stat)), media_type="application/json")


@router.post(
    "/queues/{domain}/pause",
    response_model=QueueOut,
    responses={401: {"model": ProblemOut}, 422: {"model": ProblemOut}},
    summary="Hold this tenant's mail to a domain",
)
async def pause(
    domain: str, request: Request, tenant: Annotated[Tenant, require("send")]
) -> Response:
    """Queued mail stays queued (and keeps ageing towards expiry) until resumed."""
    return await _set(request, tenant, domain, True)


@router.post(
    "/queues/{domain}/resume",
    response_model=QueueOut,
    responses={401: {"model": ProblemOut}, 422: {"model": ProblemOut}},
    summary="Resume held mail to a domain",
)
async def resume(
    domain: str, request: Request, tenant: Annotated[Tenant, require("send")]
) -> Response:
    return await _set(request, tenant, domain, False)
