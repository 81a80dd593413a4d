"""Tenants and their API keys: generation, hashing and a cached lookup.

Keys are 32 random bytes (``pl_`` + 52 base32 characters). Only their SHA-256 is
stored: a key has 256 bits of entropy, so a fast hash is safe (unlike passwords), and
it lets every request be checked with one indexed lookup. The same key is the tenant's
SMTP AUTH password (user name: the tenant name, or ``apikey``).

A key has scopes (:data:`SCOPES`): what it may do on /v1 and over SMTP. Keys made
without naming scopes (and every key made before scopes existed) have them all; no
tenant key is ever an admin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from typing import Final, Literal

from postline.errors import StoreUnavailable
from postline.store.base import KeyIdentity, Store, Tenant

__all__ = [
    "SCOPES",
    "KeyAuthenticator",
    "Scope",
    "generate_key",
    "hash_key",
    "key_prefix",
]

KEY_PREFIX = "pl_"
_TOUCH_EVERY = 60.0  # seconds between writes of a key's last use

Scope = Literal["send", "read", "suppressions", "domains", "webhooks"]
SCOPES: Final[tuple[Scope, ...]] = ("send", "read", "suppressions", "domains", "webhooks")
"""What a tenant key may be allowed: ``send`` mail (API and SMTP) and pause or resume its
queues; ``read`` messages, events, queues and reputation; manage ``suppressions``, sender
``domains`` and ``webhooks``."""


def generate_key() -> str:
    """A new API key."""
    return KEY_PREFIX + base64.b32encode(os.urandom(32)).decode().rstrip("=").lower()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str:
    """The part of a key that may be shown and logged (identifies it, reveals nothing)."""
    return key[:10]


class KeyAuthenticator:
    """Maps presented keys to their tenant and scopes, caching answers for ``ttl``
    seconds: a key revoked on another node (or with the CLI) works here for at most that
    long; :meth:`forget` drops the cache at once."""

    def __init__(self, store: Store, *, ttl: float = 10.0, max_entries: int = 10_000) -> None:
        self._store = store
        self._ttl = ttl
        self._max = max_entries
        self._cache: dict[str, tuple[float, KeyIdentity | None]] = {}

    @property
    def ttl(self) -> float:
        return self._ttl

    async def identity(self, key: str) -> KeyIdentity | None:
        """The live key ``key`` is, with its tenant and scopes (None: unknown or revoked)."""
        if not key.startswith(KEY_PREFIX) or len(key) > 128:
            return None
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            found = await self._store.key_identity(digest)
            if found is not None:
                wall = time.time()
                if found.last_used_at is None or wall - found.last_used_at >= _TOUCH_EVERY:
                    await self._store.touch_api_key(found.key_id, now=wall)
        except StoreUnavailable as exc:
            self._store.health.failed("keys", exc)
            raise
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl, found)
        return found

    async def tenant(self, key: str) -> Tenant | None:
        found = await self.identity(key)
        return None if found is None else found.tenant

    async def check_smtp(self, username: str, password: str) -> KeyIdentity | None:
        """SMTP AUTH: the password is an API key with the ``send`` scope; the user name is
        the tenant or 'apikey'. A key without ``send`` fails like a wrong one."""
        found = await self.identity(password)
        if found is None or not found.allows("send"):
            return None
        if username == "apikey" or hmac.compare_digest(username, found.tenant.name):
            return found
        return None

    def forget(self) -> None:
        self._cache.clear()
