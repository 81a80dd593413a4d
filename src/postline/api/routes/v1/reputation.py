"""/v1/reputation: the tenant's rolling bounce and complaint rates, thresholds, status."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from postline.api.context import ApiContext, require
from postline.api.schemas import ProblemOut, ReputationOut, iso
from postline.reputation.rates import OK, Counts
from postline.store.base import Tenant
from postline.units import format_duration

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["reputation"])


def _counts(c: Counts) -> dict[str, Any]:
    return {
        "counts": {"delivered": c.delivered, "bounced": c.bounced, "complained": c.complained},
        "rates": {"bounce": c.bounce_rate, "complaint": c.complaint_rate},
    }


@router.get(
    "/reputation",
    response_model=ReputationOut,
    responses={401: {"model": ProblemOut}},
    summary="This tenant's bounce and complaint rates, thresholds and sending status",
)
async def get_reputation(request: Request, tenant: Annotated[Tenant, require("read")]) -> Response:
    """Rates over the rolling window (hard bounces / (delivered + hard bounces), complaints
    / delivered), per stream and in total, against the thresholds that warn and pause.
    Counts reach the store every few seconds (``[reputation] flush_interval``)."""
    ctx: ApiContext = request.app.state.ctx
    cfg = ctx.config.reputation
    now = time.time()
    since = now - cfg.window
    statuses = await ctx.store.tenant_statuses(tenant.id)
    status = statuses[0] if statuses else None
    totals = await ctx.store.reputation_totals(since=since, tenant_id=tenant.id)
    streams = [
        (t.stream, Counts(t.delivered, t.bounced, t.complained))
        for t in totals
        if t.tenant_id == tenant.id
    ]
    total = Counts.total(c for _, c in streams)
    changed = status is not None and bool(status.changed_by)
    body = {
        "status": status.status if status else OK,
        "reason": status.reason if status else "",
        "changed_at": iso(status.changed_at) if changed and status else None,
        "changed_by": status.changed_by if changed and status else None,
        "window": format_duration(cfg.window),
        "since": iso(max(since, status.judged_since if status else 0.0)),
        "judged": cfg.enabled and total.volume >= cfg.min_volume,
        **_counts(total),
        "thresholds": {
            "bounce": {"warn": cfg.bounce_warn, "pause": cfg.bounce_pause},
            "complaint": {"warn": cfg.complaint_warn, "pause": cfg.complaint_pause},
            "min_volume": cfg.min_volume,
        },
        "streams": [{"stream": name, **_counts(c)} for name, c in streams],
    }
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")
