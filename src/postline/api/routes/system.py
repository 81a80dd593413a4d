"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from postline.api.context import ApiContext
from postline.api.problems import Problem
from postline.api.schemas import ReadyOut

__all__ = ["router"]

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


_READYZ = """200 while this node (this worker process) can accept mail; 503 while it cannot,
with the reason, for a load balancer to send clients elsewhere:

* `{"status": "starting"}`, `{"status": "stopping"}` (SIGTERM: the node drains);
* `{"status": "unavailable", "reasons": [{"component": "store", "detail": "PostgreSQL
  unreachable: ...", "since": "2025-01-01T12:00:00.000Z"}]}`: `store` (the message
  store does not answer: requests are refused with 503 `store-unavailable`, SMTP with
  `451 4.3.0`), `throttle` (the throttle backend does not answer: nothing is sent),
  `ingest` (accepting a message takes longer than `[node] ready_ack_budget`).

The node checks the store again every half second while it is down and answers 200 by
itself once it is back; asking /readyz costs no store round trip."""


@router.get(
    "/readyz",
    summary="The node accepts and delivers mail",
    description=_READYZ,
    response_model=ReadyOut,
    response_model_exclude_none=True,
    responses={
        503: {
            "model": ReadyOut,
            "description": "Not ready: starting, stopping or unavailable (with the reasons).",
        }
    },
)
async def readyz(request: Request) -> JSONResponse:
    ctx: ApiContext = request.app.state.ctx
    state = ctx.ready()
    if state.ready:
        return JSONResponse({"status": "ready"})
    body: dict[str, object] = {"status": state.status}
    if state.reasons:
        body["reasons"] = list(state.reasons)
    return JSONResponse(body, status_code=503)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    token = ctx.config.api.metrics_token
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
            raise Problem(
                401,
                "unauthenticated",
                "/metrics needs the metrics token.",
                fix="Send 'Authorization: Bearer <[api] metrics_token>'.",
                headers={"WWW-Authenticate": 'Bearer realm="postline-metrics"'},
            )
    body = await ctx.metrics_text() if ctx.metrics_text else b""
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
