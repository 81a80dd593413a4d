"""What the API's routes share: the node's context and the tenant of a request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import Request

from postline.api.problems import Problem
from postline.config import Config
from postline.ingest.service import Ingestor
from postline.store.base import Store, Tenant
from postline.tenants import KeyAuthenticator
from postline.webhooks.service import WebhookService

__all__ = ["ApiContext", "OneClickUnsubscribe", "current_tenant"]


class OneClickUnsubscribe(Protocol):
    """What the ``/u/{token}`` routes need (``postline.feedback.unsubscribe``)."""

    def verify(self, token: str) -> bool:
        """Whether the token is correctly signed."""
        ...

    async def apply_token(self, token: str, *, source: str) -> bool | None:
        """Unsubscribe the recipient the token names: None for a bad token or an unknown
        recipient, else whether anything was written (False: done before)."""
        ...


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
    ready: Callable[[], bool] = lambda: True
    unsubscribe: OneClickUnsubscribe | None = None
    webhooks: WebhookService | None = None
    node_id: str = ""
    on_tenant_status: Callable[[str], Awaitable[None]] | None = None
    """Called with a tenant's id after an admin changed its status (the node applies it
    at once)."""
    extra: dict[str, Any] = field(default_factory=dict)


async def current_tenant(request: Request) -> Tenant:
    """Dependency: the tenant named by ``Authorization: Bearer <key>``."""
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
    tenant = await ctx.auth.tenant(key.strip())
    if tenant is None:
        raise Problem(
            401,
            "unauthenticated",
            "The API key is not valid (unknown or revoked).",
            fix="Check the key, or create a new one with 'postline tenant create'.",
            headers={"WWW-Authenticate": 'Bearer realm="postline", error="invalid_token"'},
        )
    return tenant
