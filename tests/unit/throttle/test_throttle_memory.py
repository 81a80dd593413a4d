"""What the memory backend adds to the contract: bounded memory, its clock, closing."""

from __future__ import annotations

import pytest

from postline.throttle.adaptive import AdaptiveParams
from postline.throttle.memory import MemoryThrottleBackend
from postline.throttle.rules import Limits

LIMITS = Limits(messages=10, period=1.0)


async def test_idle_buckets_are_swept_and_busy_ones_kept() -> None:
    backend = MemoryThrottleBackend(AdaptiveParams(cut_cooldown=0.0))
    for i in range(1500):
        await backend.try_acquire(f"idle-{i}", LIMITS, now=0.0)
    held = await backend.acquire_connection("held", 1, "n", 1000.0, now=0.0)
    assert held is not None
    await backend.report_throttled("slowed", now=0.0)
    assert len(backend) == 1502
    for _ in range(1502):  # enough calls to trigger one sweep, all at t = 10
        await backend.connections("probe", now=10.0)
    assert len(backend) == 2
    assert await backend.connections("held", now=10.0) == 1
    assert (await backend.state("slowed", now=10.0)).factor == 0.5
    await backend.close()


async def test_unlimited_acquisitions_and_reads_create_no_bucket() -> None:
    backend = MemoryThrottleBackend()
    assert await backend.try_acquire("free", Limits(), now=0.0) == 0.0
    assert (await backend.state("free", now=0.0)).factor == 1.0
    assert await backend.connections("free", now=0.0) == 0
    await backend.release_connection("free", "x", now=0.0)
    assert await backend.renew_connection("free", "x", 1.0, now=0.0) is False
    assert len(backend) == 0
    await backend.close()


async def test_the_clock_is_injectable() -> None:
    clock = [100.0]
    backend = MemoryThrottleBackend(clock=lambda: clock[0])
    assert await backend.try_acquire("k", Limits(messages=1, period=10.0)) == 0.0
    assert await backend.try_acquire("k", Limits(messages=1, period=10.0)) == pytest.approx(10.0)
    clock[0] = 107.5
    assert await backend.try_acquire("k", Limits(messages=1, period=10.0)) == pytest.approx(2.5)
    await backend.close()


async def test_ttl_must_be_positive() -> None:
    backend = MemoryThrottleBackend()
    with pytest.raises(ValueError, match="ttl"):
        await backend.acquire_connection("k", 1, "n", 0.0)
    with pytest.raises(ValueError, match="ttl"):
        await backend.renew_connection("k", "lease", -1.0)
    await backend.close()


async def test_a_closed_backend_refuses_calls() -> None:
    backend = MemoryThrottleBackend()
    await backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        await backend.try_acquire("k", LIMITS)
