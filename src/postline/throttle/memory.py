"""The in-process throttle backend: one dict of buckets, for a single node.

Each call does a constant amount of work on one bucket (connection calls also drop that
bucket's expired leases, at most ``limit`` of them). Nothing runs in the background:
expired leases and idle buckets are dropped lazily, and a sweep over all buckets runs once
per ``max(1024, len(buckets))`` calls, so memory follows the number of busy destinations
at amortized O(1) cost. Times come from ``time.monotonic`` unless a ``clock`` or a per-call
``now`` is given.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from postline.throttle.adaptive import (
    DEFAULT_PARAMS,
    AdaptiveParams,
    AdaptiveState,
    current_factor,
    is_idle,
    on_throttled,
)
from postline.throttle.base import QuotaWindow, ThrottleStatus
from postline.throttle.gcra import effective_rate, gcra, gcra_all
from postline.throttle.rules import Limits

__all__ = ["MemoryThrottleBackend"]

_FRESH = AdaptiveState()
_SWEEP_EVERY = 1024


@dataclass(slots=True)
class _Lease:
    expires: float
    holder: str


@dataclass(slots=True)
class _Bucket:
    tat: float = -math.inf
    adaptive: AdaptiveState = _FRESH
    leases: dict[str, _Lease] = field(default_factory=dict)
    params: AdaptiveParams | None = None
    """The adaptive parameters a caller asked for (``report_throttled(params=...)``)."""

    def prune(self, now: float) -> None:
        expired = [lid for lid, lease in self.leases.items() if lease.expires <= now]
        for lid in expired:
            del self.leases[lid]


class MemoryThrottleBackend:
    """``ThrottleBackend`` in a dict; see the module docstring."""

    def __init__(
        self,
        params: AdaptiveParams = DEFAULT_PARAMS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.params = params
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        # quota counters: (group, window) -> [count, expiry]
        self._quotas: dict[tuple[str, str], list[float]] = {}
        self._calls = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryThrottleBackend(buckets={len(self._buckets)})"

    def __len__(self) -> int:
        """The number of buckets held in memory (idle ones included until a sweep)."""
        return len(self._buckets)

    # --- helpers ---------------------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        if self._closed:
            raise RuntimeError("the throttle backend is closed")
        self._calls += 1
        t = self._clock() if now is None else now
        if self._calls >= max(_SWEEP_EVERY, len(self._buckets)):
            self._calls = 0
            self._sweep(t)
        return t

    def _bucket(self, key: str) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket()
        return bucket

    def _idle(self, bucket: _Bucket, now: float) -> bool:
        bucket.prune(now)
        params = bucket.params or self.params
        return bucket.tat <= now and not bucket.leases and is_idle(bucket.adaptive, now, params)

    def _sweep(self, now: float) -> None:
        idle = [key for key, bucket in self._buckets.items() if self._idle(bucket, now)]
        for key in idle:
            del self._buckets[key]
        spent = [k for k, (_, expires) in self._quotas.items() if expires <= now]
        for k in spent:
            del self._quotas[k]

    # --- rate ------------------------------------------------------------------------------

    async def try_acquire(
        self, key: str, limits: Limits, n: int = 1, *, now: float | None = None
    ) -> float:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n!r}")
        t = self._now(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            if limits.messages is None:
                return 0.0
            bucket = self._bucket(key)
        state = bucket.adaptive
        if state.suspended(t):
            return state.suspended_until - t
        rate = effective_rate(limits, current_factor(state, t, self.params))
        if rate is None:
            return 0.0
        tat, wait = gcra(bucket.tat, t, rate[0], rate[1], n)
        if wait == 0.0:
            bucket.tat = tat
        return wait

    async def acquire_all(
        self, group: str, buckets: Sequence[tuple[str, Limits]], n: int, *, now: float | None = None
    ) -> tuple[float, int]:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n!r}")
        t = self._now(now)
        keys = [f"{group}|{name}" for name, _ in buckets]
        states = []
        for key, (_, limits) in zip(keys, buckets, strict=True):
            bucket = self._buckets.get(key)
            states.append((bucket.tat if bucket else -math.inf, limits))
        wait, at, tats = gcra_all(states, t, n)
        if at >= 0:
            return wait, at
        for key, tat in zip(keys, tats, strict=True):
            if tat is not None:
                self._bucket(key).tat = tat
        return 0.0, -1

    # --- connections -----------------------------------------------------------------------

    async def acquire_connection(
        self, key: str, limit: int | None, holder: str, ttl: float, *, now: float | None = None
    ) -> str | None:
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl!r}")
        t = self._now(now)
        bucket = self._bucket(key)
        bucket.prune(t)
        if limit is not None and len(bucket.leases) >= limit:
            return None
        lease_id = uuid.uuid4().hex
        bucket.leases[lease_id] = _Lease(expires=t + ttl, holder=holder)
        return lease_id

    async def renew_connection(
        self, key: str, lease_id: str, ttl: float, *, now: float | None = None
    ) -> bool:
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl!r}")
        t = self._now(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            return False
        bucket.prune(t)
        lease = bucket.leases.get(lease_id)
        if lease is None:
            return False
        lease.expires = t + ttl
        return True

    async def release_connection(
        self, key: str, lease_id: str, *, now: float | None = None
    ) -> None:
        self._now(now)
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.leases.pop(lease_id, None)

    async def connections(self, key: str, *, now: float | None = None) -> int:
        t = self._now(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0
        bucket.prune(t)
        return len(bucket.leases)

    # --- adaptive --------------------------------------------------------------------------

    async def report_throttled(
        self, key: str, *, now: float | None = None, params: AdaptiveParams | None = None
    ) -> AdaptiveState:
        t = self._now(now)
        bucket = self._bucket(key)
        if params is not None:
            bucket.params = params
        bucket.adaptive = on_throttled(bucket.adaptive, t, bucket.params or self.params)
        return bucket.adaptive

    async def state(self, key: str, *, now: float | None = None) -> ThrottleStatus:
        t = self._now(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            return ThrottleStatus(key, 1.0, 0.0, 0.0, 0, 0)
        bucket.prune(t)
        adaptive = bucket.adaptive
        window = (bucket.params or self.params).strike_window
        return ThrottleStatus(
            key=key,
            factor=current_factor(adaptive, t, self.params),
            suspended_until=adaptive.suspended_until,
            suspended_for=max(0.0, adaptive.suspended_until - t),
            connections=len(bucket.leases),
            strikes=sum(1 for s in adaptive.strikes if t - s < window),
        )

    # --- quotas ----------------------------------------------------------------------------

    def _count(self, group: str, window: str, now: float) -> list[float] | None:
        slot = self._quotas.get((group, window))
        if slot is not None and slot[1] <= now:
            del self._quotas[(group, window)]
            return None
        return slot

    async def take_quota(
        self, group: str, windows: Sequence[QuotaWindow], n: int, *, now: float | None = None
    ) -> int:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n!r}")
        t = self._now(now)
        grant = n
        for w in windows:
            slot = self._count(group, w.name, t)
            used = 0 if slot is None else int(slot[0])
            grant = min(grant, w.limit - used)
        grant = max(0, grant)
        if grant:
            for w in windows:
                slot = self._count(group, w.name, t)
                if slot is None:
                    self._quotas[(group, w.name)] = [float(grant), t + w.ttl]
                else:
                    slot[0] += grant
                    slot[1] = max(slot[1], t + w.ttl)
        return grant

    async def quota_used(
        self, group: str, windows: Sequence[str], *, now: float | None = None
    ) -> list[int]:
        t = self._now(now)
        out = []
        for name in windows:
            slot = self._count(group, name, t)
            out.append(0 if slot is None else int(slot[0]))
        return out

    async def close(self) -> None:
        self._buckets.clear()
        self._quotas.clear()
        self._closed = True
