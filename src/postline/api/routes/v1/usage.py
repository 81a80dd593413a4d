"""/v1/usage: the tenant's limits and its usage of today and this month."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Request

from postline.api.context import ApiContext, current_key, require
from postline.api.schemas import ProblemOut, TenantUsageOut, UsageLimitsOut, usage_out
from postline.limits import key_rate, tenant_limits, usage_report
from postline.store.base import Tenant

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["usage"])


@router.get(
    "/usage",
    responses={401: {"model": ProblemOut}, 403: {"model": ProblemOut}},
    summary="This tenant's rate limits and quotas, and what it used today and this month",
)
async def get_usage(request: Request, tenant: Annotated[Tenant, require("read")]) -> TenantUsageOut:
    """Usage counts the recipients accepted (HTTP and SMTP; a message to N recipients
    counts N, suppressed ones too) per UTC calendar day and month; a request refused by a
    limit or a quota counts nothing. The key's own rate is the calling key's."""
    ctx: ApiContext = request.app.state.ctx
    if ctx.limiter is not None:
        limits = await ctx.limiter.tenant(tenant.id)
    else:
        own = await ctx.store.tenant_limits(tenant.id)
        limits = tenant_limits(ctx.config.limits, own.get(tenant.id))
    key = await current_key(request)
    mine = key_rate(ctx.config.limits, key.rate, key.burst)
    report = await usage_report(ctx.store, tenant.id, limits, now=time.time())
    return TenantUsageOut(
        limits=UsageLimitsOut(
            rate_per_second=limits.rate,
            burst=limits.burst,
            daily_quota=limits.daily,
            monthly_quota=limits.monthly,
            key_rate_per_second=mine.rate,
            key_burst=mine.burst,
        ),
        usage=usage_out(report),
    )
