"""Who acts, and what every control action is given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from postline.config import Config
from postline.store.base import Store

__all__ = ["Actor", "ActorKind", "ControlContext"]

ActorKind = Literal["admin_token", "config_token", "tenant_key", "cli", "node"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performs an action, as the audit log names them.

    * ``admin_token``: a token made by ``postline admin token create`` (id: its id);
    * ``config_token``: a hash in ``[admin] tokens`` (id: ``sha256:`` + 12 hex digits);
    * ``tenant_key``: a tenant's API key (id: the key's id; ``tenant_id`` set);
    * ``cli``: a command run on the node with its configuration file;
    * ``node``: a node acting by itself (its chores: a suspension whose time is up; id:
      the node's name).
    """

    kind: ActorKind
    id: str
    tenant_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind != "tenant_key"

    @classmethod
    def cli(cls) -> Actor:
        return cls("cli", "local")

    @classmethod
    def node(cls, node_id: str) -> Actor:
        return cls("node", node_id)


@dataclass(frozen=True, slots=True)
class ControlContext:
    """What one action runs with: the store, the node's configuration, the actor, the
    request it came in (empty from the CLI) and the node that serves it."""

    store: Store
    config: Config
    actor: Actor
    request_id: str = ""
    node_id: str = ""
    on_tenant_status: Callable[[str], Awaitable[None]] | None = None
    """Called with a tenant's id after its status changed, so the serving node applies
    it at once (other nodes follow within ``[reputation] evaluate_interval``)."""
    on_key_revoked: Callable[[], None] | None = None
    """Called after a tenant's API key was revoked or its scopes or rate limit changed,
    so the serving node stops trusting its cached answer at once (other nodes follow
    within ``[api] key_cache_ttl``)."""
    on_pause: Callable[[str, str, bool], None] | None = None
    """Called with (tenant id, domain, paused) after a queue pause changed, so the serving
    node's delivery engine applies it at once (others at their next queue scan)."""
    on_due: Callable[[str, str], None] | None = None
    """Called with (tenant id, domain) of a queue whose mail was made due now."""
    on_reroute: Callable[[], Awaitable[None]] | None = None
    """Awaited after a reroute was added or removed: the serving node's delivery engine
    reads the reroutes before the action answers (others at their next queue scan)."""
    on_limits: Callable[[], None] | None = None
    """Called after a tenant's limits changed, so the serving node applies them at once
    (other nodes follow within ``[api] key_cache_ttl``)."""
