"""What the dashboard needs from the node, given by the HTTP application that mounts it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from postline.config import Config
from postline.control import Actor, ControlContext

__all__ = ["DashboardContext"]


@dataclass
class DashboardContext:
    config: Config
    secret: bytes
    """Signs the session cookies (the same on every worker and node sharing the key)."""
    control: Callable[[Actor, Request], ControlContext]
    """The context of a control action by ``actor`` in ``request`` (the admin API's)."""
    authenticate: Callable[[str], Awaitable[Actor | None]]
    """The admin a presented token stands for; None if it is not a live admin token."""
    is_tenant_key: Callable[[str], Awaitable[bool]]
    """Whether a presented token is a tenant's API key (refused with its own message)."""
    still_valid: Callable[[Actor], Awaitable[bool]]
    """Whether the admin token behind a session is still live (not revoked)."""
    health: Callable[[], dict[str, bool]] = dict
    """The node's health by part: ``ready``, ``throttle``, ``store_writes``, ``acks``,
    ``delivery`` (False: that part is failing or off)."""
    throttle_state: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None
    """The throttle state of a destination domain's route, as far as it is known."""
    logged_out: dict[str, float] = field(default_factory=dict)
    """Nonces of the sessions signed out in this process, until they would expire."""
