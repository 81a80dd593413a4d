"""The contract every ThrottleBackend meets, run against each backend.

To add a backend, add one entry to ``FACTORIES`` (its factory may ask for a server fixture
through ``request.getfixturevalue``), e.g.::

    "redis": lambda request: RedisThrottleBackend.connect(
        request.getfixturevalue("redis_url"), params=ADAPTIVE
    ),

Times are injected (``now=``) from ``T0`` so the tests never wait, except one lease-expiry
test that uses the backend's own clock and sleeps 0.25 s. Every test uses fresh keys, so a
shared server needs no cleaning between tests; the shared (SQLite file) backend gets a new
file per test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from postline.throttle.adaptive import AdaptiveParams
from postline.throttle.base import QuotaWindow, ThrottleBackend
from postline.throttle.memory import MemoryThrottleBackend
from postline.throttle.redis import RedisThrottleBackend
from postline.throttle.rules import Limits, ThrottleRules
from postline.throttle.shared import SharedThrottleBackend
from support.redisserver import (  # noqa: F401 (fixtures)
    redis_sentinel_url,
    redis_server,
    redis_url,
)

ADAPTIVE = AdaptiveParams(
    decrease=0.5,
    floor=0.1,
    recover_step=0.25,
    recover_interval=10.0,
    cut_cooldown=1.0,
    strikes=3,
    strike_window=60.0,
    suspend_for=300.0,
)
T0 = 1_000_000.0
TEN_PER_SECOND = Limits(messages=10, period=1.0, burst=3)


async def _memory(request: pytest.FixtureRequest) -> ThrottleBackend:
    return MemoryThrottleBackend(ADAPTIVE)


async def _redis(request: pytest.FixtureRequest) -> ThrottleBackend:
    return await RedisThrottleBackend.connect(request.getfixturevalue("redis_url"), params=ADAPTIVE)


async def _sentinel(request: pytest.FixtureRequest) -> ThrottleBackend:
    """The same server as ``redis``, found through a sentinel."""
    url = request.getfixturevalue("redis_sentinel_url")
    return await RedisThrottleBackend.connect(url, params=ADAPTIVE)


async def _shared(request: pytest.FixtureRequest) -> ThrottleBackend:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return SharedThrottleBackend(tmp_path / "throttle.db", ADAPTIVE)


FACTORIES: dict[str, Callable[[pytest.FixtureRequest], Awaitable[ThrottleBackend]]] = {
    "memory": _memory,
    "redis": _redis,
    "redis+sentinel": _sentinel,
    "shared": _shared,
}


@pytest.fixture(params=sorted(FACTORIES))
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[ThrottleBackend]:
    made = await FACTORIES[request.param](request)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
def key() -> str:
    return f"contract-{uuid.uuid4().hex}:site=mx.test:00000000"


async def _acquire(backend: ThrottleBackend, key: str, limits: Limits, at: float) -> float:
    return await backend.try_acquire(key, limits, now=at)


# --- rate ------------------------------------------------------------------------------


async def test_gcra_admits_the_burst_at_once_then_spaces_at_the_rate(
    backend: ThrottleBackend, key: str
) -> None:
    for _ in range(3):
        assert await _acquire(backend, key, TEN_PER_SECOND, T0) == 0.0
    assert await _acquire(backend, key, TEN_PER_SECOND, T0) == pytest.approx(0.1)
    assert await _acquire(backend, key, TEN_PER_SECOND, T0 + 0.05) == pytest.approx(0.05)
    assert await _acquire(backend, key, TEN_PER_SECOND, T0 + 0.1) == 0.0
    assert await _acquire(backend, key, TEN_PER_SECOND, T0 + 0.1) == pytest.approx(0.1)
    # sustained: one message per interval, no more
    granted = 0
    for step in range(1, 21):
        if await _acquire(backend, key, TEN_PER_SECOND, T0 + 0.1 + step * 0.05) == 0.0:
            granted += 1
    assert granted == 10
    # after a pause long enough to empty the bucket the full burst is back
    for _ in range(3):
        assert await _acquire(backend, key, TEN_PER_SECOND, T0 + 10) == 0.0
    assert await _acquire(backend, key, TEN_PER_SECOND, T0 + 10) > 0.0


async def test_a_refusal_counts_nothing(backend: ThrottleBackend, key: str) -> None:
    limits = Limits(messages=1, period=1.0)
    assert await _acquire(backend, key, limits, T0) == 0.0
    for _ in range(50):
        assert await _acquire(backend, key, limits, T0 + 0.5) == pytest.approx(0.5)
    assert await _acquire(backend, key, limits, T0 + 1.0) == 0.0


async def test_n_messages_are_granted_and_counted_together(
    backend: ThrottleBackend, key: str
) -> None:
    limits = Limits(messages=10, period=1.0, burst=5)
    assert await backend.try_acquire(key, limits, 4, now=T0) == 0.0
    assert await backend.try_acquire(key, limits, 2, now=T0) == pytest.approx(0.1)
    assert await backend.try_acquire(key, limits, 1, now=T0) == 0.0
    assert await backend.try_acquire(key, limits, 1, now=T0) == pytest.approx(0.1)
    # 5 sent at T0: 3 more fit once the debt is down to 2 messages, at T0 + 0.3
    assert await backend.try_acquire(key, limits, 3, now=T0 + 0.2) == pytest.approx(0.1)
    assert await backend.try_acquire(key, limits, 3, now=T0 + 0.3) == 0.0
    assert await backend.try_acquire(key, limits, 3, now=T0 + 0.3) == pytest.approx(0.3)


async def test_more_than_the_burst_waits_for_an_idle_bucket(
    backend: ThrottleBackend, key: str
) -> None:
    limits = Limits(messages=10, period=1.0, burst=2)
    assert await backend.try_acquire(key, limits, 1, now=T0) == 0.0
    assert await backend.try_acquire(key, limits, 5, now=T0) == pytest.approx(0.1)
    assert await backend.try_acquire(key, limits, 5, now=T0 + 0.1) == 0.0
    # the 5 messages are paid for: the next one waits until their debt is down to the burst
    assert await backend.try_acquire(key, limits, 1, now=T0 + 0.1) == pytest.approx(0.4)


async def test_unlimited_rate_always_grants(backend: ThrottleBackend, key: str) -> None:
    limits = Limits(connections=2)
    for i in range(200):
        assert await backend.try_acquire(key, limits, now=T0 + i * 1e-6) == 0.0
    assert await backend.try_acquire(key, limits, 10**6, now=T0) == 0.0


async def test_n_must_be_positive(backend: ThrottleBackend, key: str) -> None:
    with pytest.raises(ValueError):
        await backend.try_acquire(key, TEN_PER_SECOND, 0, now=T0)


# --- connections -----------------------------------------------------------------------


async def test_the_connection_limit_is_enforced(backend: ThrottleBackend, key: str) -> None:
    first = await backend.acquire_connection(key, 2, "node-a", 30.0, now=T0)
    second = await backend.acquire_connection(key, 2, "node-b", 30.0, now=T0)
    assert first is not None
    assert second is not None
    assert first != second
    assert await backend.acquire_connection(key, 2, "node-a", 30.0, now=T0) is None
    assert await backend.connections(key, now=T0) == 2


async def test_concurrent_acquisitions_never_exceed_the_limit(
    backend: ThrottleBackend, key: str
) -> None:
    results = await asyncio.gather(
        *(backend.acquire_connection(key, 3, f"h{i}", 30.0, now=T0) for i in range(20))
    )
    leases = [r for r in results if r is not None]
    assert len(leases) == 3
    assert len(set(leases)) == 3


async def test_release_frees_a_slot(backend: ThrottleBackend, key: str) -> None:
    lease = await backend.acquire_connection(key, 1, "node-a", 30.0, now=T0)
    assert lease is not None
    assert await backend.acquire_connection(key, 1, "node-b", 30.0, now=T0) is None
    await backend.release_connection(key, lease, now=T0)
    assert await backend.connections(key, now=T0) == 0
    again = await backend.acquire_connection(key, 1, "node-b", 30.0, now=T0)
    assert again is not None
    # releasing twice, or a lease that never existed, is harmless and frees nothing else
    await backend.release_connection(key, lease, now=T0)
    await backend.release_connection(key, "no-such-lease", now=T0)
    assert await backend.connections(key, now=T0) == 1


async def test_an_expired_lease_frees_its_slot(backend: ThrottleBackend, key: str) -> None:
    assert await backend.acquire_connection(key, 1, "crashed-node", 30.0, now=T0) is not None
    assert await backend.acquire_connection(key, 1, "node-b", 30.0, now=T0 + 29.9) is None
    assert await backend.connections(key, now=T0 + 29.9) == 1
    assert await backend.connections(key, now=T0 + 30.0) == 0
    assert await backend.acquire_connection(key, 1, "node-b", 30.0, now=T0 + 30.0) is not None


async def test_an_expired_lease_frees_its_slot_on_the_backend_clock(
    backend: ThrottleBackend, key: str
) -> None:
    assert await backend.acquire_connection(key, 1, "crashed-node", 0.2) is not None
    assert await backend.acquire_connection(key, 1, "node-b", 0.2) is None
    await asyncio.sleep(0.25)
    assert await backend.connections(key) == 0
    assert await backend.acquire_connection(key, 1, "node-b", 0.2) is not None


async def test_renewing_keeps_a_lease(backend: ThrottleBackend, key: str) -> None:
    lease = await backend.acquire_connection(key, 1, "node-a", 30.0, now=T0)
    assert lease is not None
    assert await backend.renew_connection(key, lease, 30.0, now=T0 + 20) is True
    assert await backend.acquire_connection(key, 1, "node-b", 30.0, now=T0 + 40) is None
    assert await backend.connections(key, now=T0 + 49.9) == 1
    assert await backend.connections(key, now=T0 + 50) == 0
    # too late: an expired lease cannot be renewed, and its slot went to someone else
    assert await backend.renew_connection(key, lease, 30.0, now=T0 + 50) is False
    assert await backend.renew_connection(key, "no-such-lease", 30.0, now=T0) is False


async def test_no_connection_limit_still_counts_leases(backend: ThrottleBackend, key: str) -> None:
    leases = [await backend.acquire_connection(key, None, "n", 30.0, now=T0) for _ in range(50)]
    assert None not in leases
    assert await backend.connections(key, now=T0) == 50


# --- adaptive --------------------------------------------------------------------------


async def test_a_throttling_report_halves_the_rate_and_recovery_restores_it(
    backend: ThrottleBackend, key: str
) -> None:
    limits = Limits(messages=10, period=1.0, burst=1)

    async def spacing(at: float) -> float:
        assert await _acquire(backend, key, limits, at) == 0.0
        return await _acquire(backend, key, limits, at)

    assert await spacing(T0) == pytest.approx(0.1)
    state = await backend.report_throttled(key, now=T0)
    assert state.factor == pytest.approx(0.5)
    assert (await backend.state(key, now=T0)).factor == pytest.approx(0.5)
    assert await spacing(T0 + 1) == pytest.approx(0.2)
    assert (await backend.state(key, now=T0 + 10)).factor == pytest.approx(0.75)
    assert await spacing(T0 + 10) == pytest.approx(0.1 / 0.75)
    assert (await backend.state(key, now=T0 + 20)).factor == pytest.approx(1.0)
    assert await spacing(T0 + 20) == pytest.approx(0.1)


async def test_reports_within_the_cooldown_are_one_episode(
    backend: ThrottleBackend, key: str
) -> None:
    await backend.report_throttled(key, now=T0)
    state = await backend.report_throttled(key, now=T0 + 0.5)
    assert state.factor == pytest.approx(0.5)
    assert (await backend.state(key, now=T0 + 0.5)).strikes == 1


async def test_repeated_reports_suspend_the_destination(backend: ThrottleBackend, key: str) -> None:
    limits = Limits(messages=10, period=1.0, burst=1)
    await backend.report_throttled(key, now=T0)
    await backend.report_throttled(key, now=T0 + 2)
    assert (await backend.state(key, now=T0 + 2)).strikes == 2
    state = await backend.report_throttled(key, now=T0 + 4)
    assert state.suspended_until == pytest.approx(T0 + 304)
    assert await _acquire(backend, key, limits, T0 + 100) == pytest.approx(204)
    status = await backend.state(key, now=T0 + 100)
    assert status.suspended_for == pytest.approx(204)
    assert status.suspended_until == pytest.approx(T0 + 304)
    assert status.strikes == 0
    # even an unlimited rate waits out a suspension
    assert await _acquire(backend, key, Limits(), T0 + 100) == pytest.approx(204)
    assert await _acquire(backend, key, limits, T0 + 304) == 0.0
    assert await _acquire(backend, key, limits, T0 + 304) == pytest.approx(0.1 / 0.125)
    assert (await backend.state(key, now=T0 + 304)).suspended_for == 0.0


async def test_an_unknown_key_reads_as_fresh(backend: ThrottleBackend, key: str) -> None:
    status = await backend.state(key, now=T0)
    assert status.key == key
    assert status.factor == 1.0
    assert status.suspended_for == 0.0
    assert status.connections == 0
    assert status.strikes == 0
    assert await backend.connections(key, now=T0) == 0


async def test_distinct_keys_are_independent(backend: ThrottleBackend) -> None:
    a, b = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
    limits = Limits(messages=1, period=60.0)
    assert await _acquire(backend, a, limits, T0) == 0.0
    assert await _acquire(backend, a, limits, T0) > 0.0
    assert await _acquire(backend, b, limits, T0) == 0.0
    assert await backend.acquire_connection(a, 1, "n", 30.0, now=T0) is not None
    assert await backend.acquire_connection(b, 1, "n", 30.0, now=T0) is not None
    for t in (T0, T0 + 2, T0 + 4):
        await backend.report_throttled(a, now=t)
    assert (await backend.state(a, now=T0 + 5)).suspended_for > 0
    status_b = await backend.state(b, now=T0 + 5)
    assert (status_b.factor, status_b.suspended_for, status_b.connections) == (1.0, 0.0, 1)


async def test_changing_limits_starts_a_fresh_bucket(backend: ThrottleBackend) -> None:
    name = f"r{uuid.uuid4().hex[:12]}"

    def rules(messages: int) -> ThrottleRules:
        table = {"name": name, "domains": ["x.test"], "messages": messages, "period": "1h"}
        return ThrottleRules.load([table], include_defaults=False)

    old = rules(1).match("x.test", [])
    new = rules(2).match("x.test", [])
    assert old.key != new.key
    assert await _acquire(backend, old.key, old.limits, T0) == 0.0
    assert await _acquire(backend, old.key, old.limits, T0) > 0.0
    assert await backend.acquire_connection(old.key, 1, "n", 30.0, now=T0) is not None
    await backend.report_throttled(old.key, now=T0)
    assert await _acquire(backend, new.key, new.limits, T0) == 0.0
    status = await backend.state(new.key, now=T0)
    assert (status.factor, status.connections) == (1.0, 0)


# --- per-key adaptive parameters (provider blocks) ------------------------------------------

BLOCKS = AdaptiveParams(cut_cooldown=0.0, strikes=3, strike_window=600.0, suspend_for=3600.0)


async def test_reports_with_their_own_parameters_use_them(
    backend: ThrottleBackend, key: str
) -> None:
    other = f"{key}-default"
    for t in (T0, T0 + 100, T0 + 200):
        await backend.report_throttled(key, now=t, params=BLOCKS)
        await backend.report_throttled(other, now=t)
    # three strikes within ten minutes: suspended for an hour; the backend's own
    # parameters (one minute's window) never see three at once
    assert (await backend.state(key, now=T0 + 200)).suspended_for == pytest.approx(3600.0)
    assert (await backend.state(other, now=T0 + 200)).suspended_for == 0.0
    # no cooldown: two reports in the same second are two strikes
    again = f"{key}-again"
    await backend.report_throttled(again, now=T0, params=BLOCKS)
    state = await backend.report_throttled(again, now=T0 + 0.5, params=BLOCKS)
    assert len(state.strikes) == 2


# --- quotas (warm-up caps) -----------------------------------------------------------------


async def test_a_quota_grants_up_to_the_smallest_room(backend: ThrottleBackend, key: str) -> None:
    day = QuotaWindow("d=2026-11-01", 10, 86400.0)
    hour = QuotaWindow("h=2026-11-01T13", 4, 3600.0)
    assert await backend.take_quota(key, [day, hour], 3, now=T0) == 3
    assert await backend.take_quota(key, [day, hour], 3, now=T0) == 1
    assert await backend.take_quota(key, [day, hour], 1, now=T0) == 0
    assert await backend.quota_used(key, [day.name, hour.name], now=T0) == [4, 4]
    # the next hour has room again; the day counts on
    later = QuotaWindow("h=2026-11-01T14", 4, 3600.0)
    assert await backend.take_quota(key, [day, later], 5, now=T0 + 3600) == 4
    assert await backend.take_quota(key, [day, QuotaWindow("h=x", 99, 60.0)], 5, now=T0) == 2
    assert await backend.quota_used(key, [day.name, "h=x", "unknown"], now=T0) == [10, 2, 0]
    with pytest.raises(ValueError, match="at least 1"):
        await backend.take_quota(key, [day], 0, now=T0)


async def test_quota_groups_are_independent(backend: ThrottleBackend, key: str) -> None:
    day = QuotaWindow("d=2026-11-01", 2, 86400.0)
    assert await backend.take_quota(f"{key}-a", [day], 5, now=T0) == 2
    assert await backend.take_quota(f"{key}-b", [day], 1, now=T0) == 1
    assert await backend.quota_used(f"{key}-b", [day.name], now=T0) == [1]


async def test_concurrent_quota_takes_never_exceed_the_limit(
    backend: ThrottleBackend, key: str
) -> None:
    day = QuotaWindow("d", 25, 600.0)
    grants = await asyncio.gather(*(backend.take_quota(key, [day], 2) for _ in range(40)))
    assert sum(grants) == 25
    assert await backend.quota_used(key, ["d"]) == [25]


async def test_a_quota_counter_is_forgotten_after_its_ttl(
    backend: ThrottleBackend, key: str
) -> None:
    short = QuotaWindow("h", 1, 0.05)
    assert await backend.take_quota(key, [short], 1) == 1
    assert await backend.take_quota(key, [short], 1) == 0
    await asyncio.sleep(1.2)  # Redis keeps idle records one second past their time
    assert await backend.quota_used(key, ["h"]) == [0]
    assert await backend.take_quota(key, [short], 1) == 1


# --- several buckets at once (a tenant's and its key's sending rates) ---------------------


async def test_acquire_all_takes_from_every_bucket_or_from_none(backend: ThrottleBackend) -> None:
    group = f"limits@{uuid.uuid4().hex}"
    tenant = ("tenant", Limits(messages=5, period=1.0, burst=10))
    key = ("key=a", Limits(messages=1, period=1.0, burst=3))
    other = ("key=b", Limits(messages=1, period=1.0, burst=3))
    # The key's burst of 3 runs out first; refused, the tenant's bucket is not charged.
    assert await backend.acquire_all(group, [tenant, key], 3, now=T0) == (0.0, -1)
    wait, at = await backend.acquire_all(group, [tenant, key], 1, now=T0)
    assert at == 1 and wait == pytest.approx(1.0)
    # Another key of the tenant has the tenant's remaining 7 minus its own burst of 3.
    assert await backend.acquire_all(group, [tenant, other], 3, now=T0) == (0.0, -1)
    assert await backend.acquire_all(group, [tenant, other], 1, now=T0) == (pytest.approx(1.0), 1)
    # The tenant has 4 left: 4 more through a key without a limit, then the tenant refuses.
    assert await backend.acquire_all(group, [tenant], 4, now=T0) == (0.0, -1)
    fresh = ("key=d", Limits(messages=1, period=1.0, burst=3))
    wait, at = await backend.acquire_all(group, [tenant, fresh], 1, now=T0 + 0.1)
    assert at == 0 and wait == pytest.approx(0.1)
    # The refusal charged the fresh key nothing: its whole burst is there.
    assert await backend.acquire_all(group, [fresh], 3, now=T0 + 0.1) == (0.0, -1)
    # Time refills both; an unlimited bucket is left alone.
    unlimited = ("key=c", Limits())
    assert await backend.acquire_all(group, [tenant, key, unlimited], 1, now=T0 + 1.0) == (
        0.0,
        -1,
    )
    with pytest.raises(ValueError):
        await backend.acquire_all(group, [tenant], 0, now=T0)
