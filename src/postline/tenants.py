"""Tenants and their API keys: generation, hashing and a cached lookup.

Keys are 32 random bytes (``pl_`` + 52 base32 characters). Only their SHA-256 is
stored: a key has 256 bits of entropy, so a fast hash is safe (unlike passwords), and
it lets every request be checked with one indexed lookup. The same key is the tenant's
SMTP AUTH password (user name: the tenant name, or ``apikey``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time

from postline.store.base import Store, Tenant

__all__ = ["KeyAuthenticator", "generate_key", "hash_key", "key_prefix"]

KEY_PREFIX = "pl_"


def generate_key() -> str:
    """A new API key."""
    return KEY_PREFIX + base64.b32encode(os.urandom(32)).decode().rstrip("=").lower()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str:
    """The part of a key that may be shown and logged (identifies it, reveals nothing)."""
    return key[:10]


class KeyAuthenticator:
    """Maps presented keys to tenants, caching answers for ``ttl`` seconds."""

    def __init__(self, store: Store, *, ttl: float = 10.0, max_entries: int = 10_000) -> None:
        self._store = store
        self._ttl = ttl
        self._max = max_entries
        self._cache: dict[str, tuple[float, Tenant | None]] = {}

    async def tenant(self, key: str) -> Tenant | None:
        if not key.startswith(KEY_PREFIX) or len(key) > 128:
            return None
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        tenant = await self._store.tenant_for_key(digest)
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl, tenant)
        return tenant

    async def check_smtp(self, username: str, password: str) -> Tenant | None:
        """SMTP AUTH: the password is an API key; the user name is the tenant or 'apikey'."""
        tenant = await self.tenant(password)
        if tenant is None:
            return None
        if username == "apikey" or hmac.compare_digest(username, tenant.name):
            return tenant
        return None

    def forget(self) -> None:
        self._cache.clear()
