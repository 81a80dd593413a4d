"""Admin tokens: made, listed and revoked, and checked on every admin request.

A token is ``pla_`` + 52 base32 characters (32 random bytes). Like tenant keys, only its
SHA-256 is stored: with 256 bits of entropy a fast hash is safe and one indexed lookup
checks it. ``[admin] tokens`` may list more, by hash only, so the configuration file
holds no secret; those are not in the store and cannot be revoked over the API.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import dataclass

from postline.config import AdminConfig
from postline.control import audit
from postline.control.context import Actor, ControlContext
from postline.errors import NotFound, ValidationError
from postline.store.base import AdminToken, ControlStore

__all__ = [
    "TOKEN_PREFIX",
    "AdminAuthenticator",
    "NewToken",
    "TokenView",
    "create_token",
    "generate_token",
    "hash_token",
    "list_tokens",
    "revoke_token",
]

TOKEN_PREFIX = "pla_"  # noqa: S105 - the public start of every token, not a secret
_SHOWN = 11  # characters of a token that may be shown: the prefix and 7 random ones
_TOUCH_EVERY = 60.0  # seconds between writes of a token's last use


def generate_token() -> str:
    return TOKEN_PREFIX + base64.b32encode(os.urandom(32)).decode().rstrip("=").lower()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _config_id(digest: str) -> str:
    return f"sha256:{digest[:12]}"


@dataclass(frozen=True, slots=True)
class TokenView:
    id: str
    name: str
    prefix: str
    source: str
    """``store`` (made by a command or the API) or ``config`` (``[admin] tokens``)."""
    created_at: float | None
    last_used_at: float | None
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class NewToken:
    token: AdminToken
    secret: str
    """The token itself: shown once, never stored."""


class AdminAuthenticator:
    """Maps a presented token to the admin :class:`Actor` it stands for (no cache: a
    revoked token is refused at once; admin requests are few)."""

    def __init__(self, store: ControlStore, config: AdminConfig) -> None:
        self._store = store
        self._config = {h.removeprefix("sha256:") for h in config.tokens}

    async def actor(self, token: str) -> Actor | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        digest = hash_token(token)
        if digest in self._config:
            return Actor("config_token", _config_id(digest))
        found = await self._store.admin_token_for_hash(digest)
        if found is None:
            return None
        now = time.time()
        if found.last_used_at is None or now - found.last_used_at >= _TOUCH_EVERY:
            await self._store.touch_admin_token(found.id, now=now)
        return Actor("admin_token", found.id)

    async def still_valid(self, actor: Actor) -> bool:
        """Whether the token an admin signed in with is still live: a config token still
        listed, a stored token not revoked (a dashboard session ends with its token)."""
        if actor.kind == "config_token":
            return any(_config_id(h) == actor.id for h in self._config)
        if actor.kind != "admin_token":
            return False
        return any(
            t.id == actor.id and t.revoked_at is None for t in await self._store.admin_tokens()
        )


async def create_token(ctx: ControlContext, name: str = "") -> NewToken:
    """Make a token; the secret is in the answer only."""
    secret = generate_token()
    token = await ctx.store.add_admin_token(name.strip()[:100], hash_token(secret), secret[:_SHOWN])
    await audit.record(
        ctx, "admin_token.create", token.id, detail={"name": token.name, "prefix": token.prefix}
    )
    return NewToken(token, secret)


async def list_tokens(ctx: ControlContext) -> list[TokenView]:
    """The store's tokens (revoked ones too), then those of ``[admin] tokens``."""
    out = [
        TokenView(t.id, t.name, t.prefix, "store", t.created_at, t.last_used_at, t.revoked_at)
        for t in await ctx.store.admin_tokens()
    ]
    for h in ctx.config.admin.tokens:
        digest = h.removeprefix("sha256:")
        out.append(TokenView(_config_id(digest), "", "", "config", None, None, None))
    return out


async def revoke_token(ctx: ControlContext, token_id: str) -> TokenView:
    """Revoke a live token of the store; it is refused from the next request on."""
    if token_id.startswith("sha256:"):
        raise ValidationError(
            f"token {token_id} is set in the configuration file and cannot be revoked here",
            field="id",
            fix="Remove its hash from [admin] tokens and restart the node.",
        )
    if not await ctx.store.revoke_admin_token(token_id, now=time.time()):
        raise NotFound(f"no live admin token has id {token_id!r}")
    view = next(t for t in await list_tokens(ctx) if t.id == token_id)
    await audit.record(
        ctx, "admin_token.revoke", token_id, detail={"name": view.name, "prefix": view.prefix}
    )
    return view
