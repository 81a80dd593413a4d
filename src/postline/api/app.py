"""The HTTP API application: ``create_app(context)``."""

from __future__ import annotations

import os

from fastapi import Depends, FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postline import __version__
from postline.api.context import ApiContext, OneClickUnsubscribe, control_context, current_tenant
from postline.api.openapi import install_openapi
from postline.api.problems import Problem, install_problem_handlers, problem_response
from postline.api.request_id import RequestId
from postline.api.strict_query import known_query_parameters
from postline.control import Actor, ControlContext
from postline.control.tokens import AdminAuthenticator
from postline.dashboard import DashboardContext, SessionCodec

__all__ = ["ApiContext", "OneClickUnsubscribe", "create_app", "current_tenant"]


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with a 413 problem, streamed or not."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = Problem(
            413,
            "too-large",
            f"The request body is larger than {self.limit} bytes.",
            fix="Send fewer messages per batch, or smaller messages.",
        )
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await problem_response(too_big, scope.get("path"))(scope, receive, send)
                return
        # Read the body here, within the limit, so a streamed upload without a
        # Content-Length is refused the same way; the app then reads it from memory.
        chunks: list[bytes] = []
        seen = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(None, message, receive), send)
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await problem_response(too_big, scope.get("path"))(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay(body, None, receive), send)


def _replay(body: Message | None, first: Message | None, receive: Receive) -> Receive:
    """A receive callable that yields the buffered message once, then the real stream."""
    pending = [m for m in (first, body) if m is not None]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


def _mount_dashboard(app: FastAPI, ctx: ApiContext) -> None:
    """The operator dashboard at /ui, with the admin API's tokens and control context."""
    from postline.dashboard import router

    admin_auth: AdminAuthenticator = app.state.admin_auth
    secret = ctx.session_secret or os.urandom(32)

    async def is_tenant_key(token: str) -> bool:
        return await ctx.auth.tenant(token) is not None

    def control(actor: Actor, request: Request) -> ControlContext:
        return control_context(actor, request)

    app.state.dashboard = DashboardContext(
        config=ctx.config,
        secret=secret,
        control=control,
        authenticate=admin_auth.actor,
        is_tenant_key=is_tenant_key,
        still_valid=admin_auth.still_valid,
        health=ctx.health or (lambda: {"ready": ctx.ready().ready}),
        throttle_state=ctx.throttle_state,
    )
    app.state.dashboard_codec = SessionCodec(secret)
    app.include_router(router)


def create_app(ctx: ApiContext) -> FastAPI:
    from postline.api.routes import admin, admin_queues, system, unsubscribe
    from postline.api.routes.v1 import (
        audit,
        domains,
        events,
        messages,
        pools,
        queues,
        reputation,
        suppressions,
        usage,
        webhooks,
    )

    app = FastAPI(
        title="postline",
        version=__version__,
        description="Email sending API: submit messages, follow their delivery, manage queues. "
        "Errors are RFC 9457 problem documents (application/problem+json).",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        # No redirect to the slash-less path: it would be built from the client's Host
        # header. An unknown path is a 404 problem.
        redirect_slashes=False,
        dependencies=[Depends(known_query_parameters)],
    )
    app.state.ctx = ctx
    app.state.admin_auth = AdminAuthenticator(ctx.store, ctx.config.admin)
    install_problem_handlers(app)
    install_openapi(app)
    app.include_router(messages.router)
    app.include_router(events.router)
    app.include_router(queues.router)
    app.include_router(suppressions.router)
    app.include_router(domains.router)
    app.include_router(pools.router)
    app.include_router(reputation.router)
    app.include_router(webhooks.router)
    app.include_router(audit.router)
    app.include_router(usage.router)
    app.include_router(system.router)
    app.include_router(unsubscribe.router)
    app.include_router(admin.router)
    app.include_router(admin_queues.router)
    if ctx.config.dashboard.enabled:
        _mount_dashboard(app, ctx)
    app.add_middleware(BodyLimit, limit=ctx.config.api.max_request_size)
    # Outermost: even a refusal of the body limit carries the request's id.
    app.add_middleware(RequestId)
    return app
