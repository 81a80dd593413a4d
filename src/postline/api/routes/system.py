"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from postline.api.context import ApiContext
from postline.api.problems import Problem

__all__ = ["router"]

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="The node accepts and delivers mail")
async def readyz(request: Request) -> JSONResponse:
    ctx: ApiContext = request.app.state.ctx
    if ctx.ready():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "starting"}, status_code=503)


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
