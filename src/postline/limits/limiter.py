"""The limiter ingest asks before it enqueues what a tenant (through one of its keys)
submitted.

Rates are GCRA buckets on the node's throttle backend: ``tenant.<digest>`` and
``key=<key id>.<digest>`` of group ``limits@<tenant id>`` (the digest covers the limit,
so a changed limit starts a fresh bucket). Both are taken in one atomic step
(``ThrottleBackend.acquire_all``): a request refused by one limit counts against neither.
A request counts its recipients (a message to N recipients counts N); one larger than
the burst is granted only from an idle bucket, and the debt it leaves delays what follows.

Quotas are counted by the store in the enqueue's transaction; the limiter only says which
apply (:class:`~postline.store.base.Quota`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

from postline.config import LimitsConfig
from postline.errors import RateLimited
from postline.limits.resolve import TenantLimits, key_rate, tenant_limits
from postline.store.base import KeyIdentity, LimitOverrides, Quota, TenantStore
from postline.throttle.base import ThrottleBackend
from postline.throttle.keys import limits_digest
from postline.throttle.rules import Limits

__all__ = ["Limiter"]


class Limiter:
    """Rate limits and quotas of tenants and keys; see the module docstring.

    The tenants' own limits are read from the store all at once and kept for ``ttl``
    seconds (a change made on another node applies here within that time; :meth:`forget`
    applies one made here at once). A key's own limit comes with its identity.
    """

    def __init__(
        self,
        store: TenantStore,
        throttle: ThrottleBackend | None,
        config: LimitsConfig,
        *,
        ttl: float = 10.0,
    ) -> None:
        self.store = store
        self.throttle = throttle
        self.config = config
        self.ttl = ttl
        self._own: Mapping[str, LimitOverrides] = {}
        self._until = -math.inf

    def forget(self) -> None:
        """Read the tenants' limits again at the next request."""
        self._until = -math.inf

    async def tenant(self, tenant_id: str) -> TenantLimits:
        """What holds the tenant now."""
        now = time.monotonic()
        if now >= self._until:
            self._own = await self.store.tenant_limits()
            self._until = now + self.ttl
        return tenant_limits(self.config, self._own.get(tenant_id))

    async def admit(self, tenant_id: str, key: KeyIdentity | None, n: int) -> Quota | None:
        """Take ``n`` recipients from the tenant's and the key's rates (all or nothing),
        or raise :class:`RateLimited`; the quota the enqueue is held to (None: none)."""
        limits = await self.tenant(tenant_id)
        buckets: list[tuple[str, Limits]] = []
        scopes: list[tuple[str, int, int]] = []
        if limits.rate:
            rule = Limits(messages=limits.rate, period=1.0, burst=limits.burst)
            buckets.append((f"tenant.{limits_digest(rule)}", rule))
            scopes.append(("tenant", limits.rate, limits.burst))
        if key is not None:
            own = key_rate(self.config, key.rate, key.burst)
            if own.rate:
                rule = Limits(messages=own.rate, period=1.0, burst=own.burst)
                buckets.append((f"key={key.key_id}.{limits_digest(rule)}", rule))
                scopes.append(("key", own.rate, own.burst))
        if buckets and n > 0 and self.throttle is not None:
            wait, at = await self.throttle.acquire_all(f"limits@{tenant_id}", buckets, n)
            if wait > 0:
                scope, rate, burst = scopes[at]
                whose = f"API key {key.prefix}…" if scope == "key" and key else "tenant"
                retry = max(1, math.ceil(wait))
                raise RateLimited(
                    f"the {whose} rate limit of {rate} recipients per second (burst {burst}) "
                    f"is reached: this request has {n} recipient(s); retry in {retry} s",
                    scope=scope,
                    rate=rate,
                    burst=burst,
                    retry_after=wait,
                )
        if limits.daily or limits.monthly:
            return Quota(daily=limits.daily, monthly=limits.monthly)
        return None
