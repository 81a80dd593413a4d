"""What the API's routes share: the node's context and the tenant of a request.

Every /v1 route names the scope its key needs with :func:`require` (the one place that
maps routes to scopes; the OpenAPI document shows it as the route's ``security``
requirement, and a test fails for a /v1 route without one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from postline.api.problems import Problem
from postline.api.request_id import request_id_of
from postline.config import Config
from postline.control import Actor, ControlContext, audit
from postline.ingest.service import Ingestor
from postline.limits import Limiter
from postline.store.base import KeyIdentity, Store, Tenant
from postline.tenants import SCOPES, KeyAuthenticator, Scope
from postline.webhooks.service import WebhookService

__all__ = [
    "ApiContext",
    "OneClickUnsubscribe",
    "Readiness",
    "audited",
    "control_context",
    "current_key",
    "current_tenant",
    "require",
    "tenant_control",
]

API_KEY_SCHEME = "ApiKey"
"""The OpenAPI name of the Bearer API key; its requirement lists the scope a route needs."""

_bearer = HTTPBearer(
    scheme_name=API_KEY_SCHEME,
    description="A tenant's API key (pl_…). Each route needs one scope of the key: send, "
    "read, suppressions, domains or webhooks.",
    auto_error=False,
)


class OneClickUnsubscribe(Protocol):
    """What the ``/u/{token}`` routes need (``postline.feedback.unsubscribe``)."""

    def verify(self, token: str) -> bool:
        """Whether the token is correctly signed."""
        ...

    async def apply_token(self, token: str, *, source: str) -> bool | None:
        """Unsubscribe the recipient the token names: None for a bad token or an unknown
        recipient, else whether anything was written (False: done before)."""
        ...


@dataclass(frozen=True, slots=True)
class Readiness:
    """What /readyz answers: ``status`` is ``ready``, ``starting``, ``stopping`` or
    ``unavailable``; ``reasons`` say what cannot work (each a ``component``, a
    ``detail`` and ``since``, an ISO 8601 UTC time)."""

    status: str = "ready"
    reasons: tuple[dict[str, str], ...] = ()

    @property
    def ready(self) -> bool:
        return self.status == "ready"


@dataclass
class ApiContext:
    """What the API needs from the node; built by the runtime."""

    config: Config
    store: Store
    ingestor: Ingestor
    auth: KeyAuthenticator
    throttle_state: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None
    metrics_text: Callable[[], Awaitable[bytes]] | None = None
    on_pause: Callable[[str, str, bool], None] | None = None
    on_cancel: Callable[[str], None] | None = None
    ready: Callable[[], Readiness] = Readiness
    unsubscribe: OneClickUnsubscribe | None = None
    webhooks: WebhookService | None = None
    node_id: str = ""
    on_tenant_status: Callable[[str], Awaitable[None]] | None = None
    """Called with a tenant's id after an admin changed its status (the node applies it
    at once)."""
    session_secret: bytes = b""
    """Signs the dashboard's session cookies; empty: a random one for this process."""
    health: Callable[[], dict[str, bool]] | None = None
    """The node's health by part (see ``postline.dashboard.DashboardContext.health``)."""
    limiter: Limiter | None = None
    """The node's rate limits and quotas (None: nothing is limited)."""
    extra: dict[str, Any] = field(default_factory=dict)


async def current_key(request: Request) -> KeyIdentity:
    """Dependency: the live key of ``Authorization: Bearer <key>``, its tenant and scopes
    (401 when missing, malformed, unknown or revoked). Kept as ``request.state.api_key``
    for the route (its rate limit)."""
    known = getattr(request.state, "api_key", None)
    if isinstance(known, KeyIdentity):
        return known
    ctx: ApiContext = request.app.state.ctx
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if not header:
        raise Problem(
            401,
            "unauthenticated",
            "No API key was given.",
            fix="Send 'Authorization: Bearer <key>'; create a key with "
            "'postline tenant create NAME --config FILE'.",
            headers={"WWW-Authenticate": 'Bearer realm="postline"'},
        )
    if scheme.lower() != "bearer" or not key.strip():
        raise Problem(
            401,
            "unauthenticated",
            "The Authorization header is not a Bearer token.",
            fix="Send 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": 'Bearer realm="postline"'},
        )
    found = await ctx.auth.identity(key.strip())
    if found is None:
        raise Problem(
            401,
            "unauthenticated",
            "The API key is not valid (unknown or revoked).",
            fix="Check the key, or create a new one with 'postline tenant create'.",
            headers={"WWW-Authenticate": 'Bearer realm="postline", error="invalid_token"'},
        )
    request.state.api_key = found
    return found


async def current_tenant(request: Request) -> Tenant:
    """Dependency: the tenant of the request's key, whatever its scopes (routes use
    :func:`require` instead)."""
    return (await current_key(request)).tenant


async def _scoped(
    request: Request,
    scopes: SecurityScopes,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Tenant:
    found = await current_key(request)
    request.state.key = found
    missing = [s for s in scopes.scopes if not found.allows(s)]
    if missing:
        raise Problem(
            403,
            "insufficient-scope",
            f"The API key {found.prefix}… lacks the '{missing[0]}' scope this request needs.",
            fix=f"Use a key with the '{missing[0]}' scope. Ask the operator for one: "
            f"POST /admin/v1/tenants/{found.tenant.id}/keys with "
            f'{{"scopes": ["{missing[0]}"]}} makes it.',
            headers={
                "WWW-Authenticate": f'Bearer realm="postline", error="insufficient_scope", '
                f'scope="{" ".join(missing)}"'
            },
        )
    return found.tenant


def require(scope: Scope) -> Any:
    """Dependency factory: the request's tenant, once its key is known to have ``scope``
    (403 ``insufficient_scope`` if not). Use as ``Annotated[Tenant, require("send")]``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    return Security(_scoped, scopes=[scope])


def control_context(actor: Actor, request: Request) -> ControlContext:
    """The context of an admin action: the acting admin, the request's id, and the hooks
    with which the serving node applies a change at once (the dashboard's too)."""
    ctx: ApiContext = request.app.state.ctx
    wake = ctx.extra.get("wake_queue")
    rerouted = ctx.extra.get("reroutes_changed")
    limiter = ctx.limiter

    def on_limits() -> None:
        ctx.auth.forget()
        if limiter is not None:
            limiter.forget()

    return ControlContext(
        ctx.store,
        ctx.config,
        actor,
        request_id=request_id_of(request.scope),
        node_id=ctx.node_id,
        on_tenant_status=ctx.on_tenant_status,
        on_key_revoked=ctx.auth.forget,
        on_pause=ctx.on_pause,
        on_due=wake if callable(wake) else None,
        on_reroute=rerouted if callable(rerouted) else None,
        on_limits=on_limits,
    )


def tenant_control(request: Request, tenant: Tenant) -> ControlContext:
    """The context of a tenant's own action on /v1: the acting key (actor ``tenant_key``,
    its id), the request's id and the hooks with which the serving node applies it."""
    key: KeyIdentity | None = getattr(request.state, "key", None)
    return control_context(Actor("tenant_key", key.key_id if key else "", tenant.id), request)


async def audited(
    request: Request,
    tenant: Tenant,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Write the audit entry of a tenant's change of its configuration through /v1."""
    await audit.record(
        tenant_control(request, tenant), action, target, tenant_id=tenant.id, detail=detail
    )
