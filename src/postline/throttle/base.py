"""The throttle backend interface, shared by the memory and Redis backends.

Every method is one atomic step on one bucket key: the Redis backend runs each as one Lua
script, and callers never read, modify and write state across calls. Times are seconds on
the backend's clock (monotonic in memory, shared wall-clock time on Redis); every method
takes an optional ``now`` so tests can drive time. ``ThrottleStatus.suspended_for`` gives
the remaining suspension independently of the clock, for APIs and metrics.

Both backends pass ``tests/contract/test_throttle_contract.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from postline.throttle.adaptive import AdaptiveParams, AdaptiveState
from postline.throttle.rules import Limits

__all__ = ["QuotaWindow", "ThrottleBackend", "ThrottleStatus"]


@dataclass(frozen=True, slots=True)
class QuotaWindow:
    """One fixed-window counter of a quota group (e.g. today's or this hour's sends)."""

    name: str
    """The window's name within the group, e.g. ``d=2026-11-01`` or ``h=2026-11-01T13``."""
    limit: int
    """Most units the window grants."""
    ttl: float
    """Seconds the counter must live from now: until its window is over."""


@dataclass(frozen=True, slots=True)
class ThrottleStatus:
    """What one bucket looks like right now (for ``/v1/queues`` and metrics)."""

    key: str
    factor: float
    """The adaptive factor now (1.0 = the configured rate)."""
    suspended_until: float
    """Backend clock time when a suspension ends (0.0 or in the past: not suspended)."""
    suspended_for: float
    """Seconds of suspension left (0.0 when not suspended)."""
    connections: int
    """Live connection leases."""
    strikes: int
    """Recent throttling episodes counting towards a suspension."""


class ThrottleBackend(Protocol):
    """Rate, concurrency and adaptive state per bucket key (``Destination.key``)."""

    async def try_acquire(
        self, key: str, limits: Limits, n: int = 1, *, now: float | None = None
    ) -> float:
        """Take ``n`` messages from the GCRA bucket, slowed by the adaptive factor.

        ``0.0``: granted and counted. ``> 0``: nothing granted; the seconds until ``n``
        could be granted (or until a suspension ends). Unlimited rate and not suspended:
        always ``0.0``. ``n < 1`` raises ``ValueError``.
        """
        ...

    async def acquire_all(
        self, group: str, buckets: Sequence[tuple[str, Limits]], n: int, *, now: float | None = None
    ) -> tuple[float, int]:
        """Take ``n`` from every bucket of ``group`` (name, limits) at once, or from none.

        Plain GCRA (``gcra.gcra``): no adaptive factor, no suspension. ``(0.0, -1)``:
        granted and counted on every bucket; else ``(wait, i)``: nothing counted, the
        longest wait in seconds and the position of the bucket that asks for it. Buckets
        with an unlimited rate are left alone. ``n < 1`` raises ``ValueError``.
        """
        ...

    async def acquire_connection(
        self, key: str, limit: int | None, holder: str, ttl: float, *, now: float | None = None
    ) -> str | None:
        """A lease id for one connection slot, or None when ``limit`` leases are live.

        A lease expires ``ttl`` seconds after it was taken or last renewed, so the slots
        of a crashed node free themselves. ``limit=None`` never refuses (leases still count).
        ``holder`` names the owner (node, process) for diagnostics.
        """
        ...

    async def renew_connection(
        self, key: str, lease_id: str, ttl: float, *, now: float | None = None
    ) -> bool:
        """Extend a live lease to ``now + ttl``; False when it expired or does not exist."""
        ...

    async def release_connection(
        self, key: str, lease_id: str, *, now: float | None = None
    ) -> None:
        """Free a lease's slot; releasing an unknown or expired lease does nothing."""
        ...

    async def connections(self, key: str, *, now: float | None = None) -> int:
        """The number of live leases of ``key``."""
        ...

    async def report_throttled(
        self, key: str, *, now: float | None = None, params: AdaptiveParams | None = None
    ) -> AdaptiveState:
        """Record a throttling reply (``adaptive.on_throttled``); return the new state.

        ``params`` replaces the backend's own for this key (provider blocks count strikes
        over a longer window and suspend for longer than throttling does); pass the same
        ones on every call for one key.
        """
        ...

    async def take_quota(
        self, group: str, windows: Sequence[QuotaWindow], n: int, *, now: float | None = None
    ) -> int:
        """Count up to ``n`` units against every window of ``group`` at once.

        Grants ``min(n, room)`` where room is the smallest ``limit - used`` over the
        windows (never below 0) and adds the grant to every window; returns the grant. A
        window's counter starts at 0 and is forgotten ``ttl`` seconds after its last
        use. ``n < 1`` raises ``ValueError``.
        """
        ...

    async def quota_used(
        self, group: str, windows: Sequence[str], *, now: float | None = None
    ) -> list[int]:
        """What each named window of ``group`` has counted (0 when unknown or expired)."""
        ...

    async def state(self, key: str, *, now: float | None = None) -> ThrottleStatus:
        """The bucket's status now; an unknown key reads as fresh (factor 1.0)."""
        ...

    async def close(self) -> None:
        """Release the backend's resources; further calls are not allowed."""
        ...
