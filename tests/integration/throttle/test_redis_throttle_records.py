"""What the Redis backend keeps: record names, expiry, scripts and its clock."""

from __future__ import annotations

import time
import uuid

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from postline.throttle.adaptive import AdaptiveParams
from postline.throttle.redis import RedisThrottleBackend
from postline.throttle.rules import Limits

T0 = 1_000_000.0


async def _records(raw: aioredis.Redis, prefix: str) -> list[str]:
    return sorted([k async for k in raw.scan_iter(match=f"{prefix}*")])


async def test_a_buckets_records_share_one_cluster_slot(
    nodes: list[RedisThrottleBackend], raw: aioredis.Redis, prefix: str, key: str
) -> None:
    backend = nodes[0]
    assert await backend.try_acquire(key, Limits(messages=1, period=60.0), now=T0) == 0.0
    assert await backend.acquire_connection(key, 1, "n", 30.0, now=T0) is not None
    await backend.report_throttled(key, now=T0)
    names = backend.keys(key)
    assert await _records(raw, prefix) == sorted([names.rate, names.adaptive, names.leases])
    assert names.rate == f"{prefix}throttle:{{{key}}}:rate"
    assert len({key_slot(n.encode()) for n in (names.rate, names.adaptive, names.leases)}) == 1


async def test_every_record_expires_once_idle(
    nodes: list[RedisThrottleBackend], raw: aioredis.Redis, prefix: str, key: str
) -> None:
    backend = nodes[0]
    names = backend.keys(key)
    # 3 messages at 1 per 10 s from an idle bucket with a burst of 1: TAT = now + 30 s
    assert await backend.try_acquire(key, Limits(messages=1, period=10.0), 3, now=T0) == 0.0
    assert 29_000 < await raw.pttl(names.rate) <= 31_000
    lease = await backend.acquire_connection(key, None, "n", 20.0, now=T0)
    assert lease is not None
    assert 19_000 < await raw.pttl(names.leases) <= 21_000
    assert await backend.renew_connection(key, lease, 45.0, now=T0 + 1) is True
    assert 44_000 < await raw.pttl(names.leases) <= 46_000
    # factor 0.5 recovers by 0.25 per 10 s; the strike leaves its 60 s window last
    await backend.report_throttled(key, now=T0)
    assert 59_000 < await raw.pttl(names.adaptive) <= 61_000
    for name in await _records(raw, prefix):
        assert await raw.pttl(name) > 0, name


async def test_a_suspension_keeps_its_record_until_it_ends(
    nodes: list[RedisThrottleBackend], raw: aioredis.Redis, key: str
) -> None:
    backend = nodes[0]
    for t in (T0, T0 + 2, T0 + 4):
        await backend.report_throttled(key, now=t)
    # suspended until T0 + 304, then the factor needs 4 steps of 10 s (+1 for rounding)
    ttl = await raw.pttl(backend.keys(key).adaptive)
    assert (300 + 50) * 1000 < ttl <= (300 + 50 + 1) * 1000


async def test_releasing_the_last_lease_leaves_nothing(
    nodes: list[RedisThrottleBackend], raw: aioredis.Redis, prefix: str, key: str
) -> None:
    backend = nodes[0]
    lease = await backend.acquire_connection(key, 2, "n", 30.0)
    assert lease is not None
    await backend.release_connection(key, lease)
    assert await _records(raw, prefix) == []


async def test_unlimited_rates_and_reads_write_nothing(
    nodes: list[RedisThrottleBackend], raw: aioredis.Redis, prefix: str, key: str
) -> None:
    backend = nodes[0]
    assert await backend.try_acquire(key, Limits(connections=3), 50, now=T0) == 0.0
    assert (await backend.state(key, now=T0)).factor == 1.0
    assert await backend.connections(key, now=T0) == 0
    assert await backend.renew_connection(key, "nope", 5.0, now=T0) is False
    await backend.release_connection(key, "nope", now=T0)
    assert await _records(raw, prefix) == []


async def test_a_lease_id_names_its_holder(
    nodes: list[RedisThrottleBackend], raw: aioredis.Redis, key: str
) -> None:
    backend = nodes[0]
    lease = await backend.acquire_connection(key, 5, "node-7/pid-42", 30.0, now=T0)
    assert lease is not None
    assert lease.endswith("@node-7/pid-42")
    held = await raw.zrange(backend.keys(key).leases, 0, -1, withscores=True)
    assert held == [(lease, T0 + 30.0)]


async def test_scripts_come_back_after_a_script_flush(
    nodes: list[RedisThrottleBackend], raw: aioredis.Redis, key: str
) -> None:
    backend = nodes[0]
    limits = Limits(messages=1, period=60.0)
    assert await backend.try_acquire(key, limits, now=T0) == 0.0
    await raw.script_flush()
    assert await backend.try_acquire(key, limits, now=T0 + 30) == pytest.approx(30.0)
    assert await backend.connections(key, now=T0) == 0
    # EVAL cached the scripts it ran again: the next calls are EVALSHA hits
    assert await raw.script_exists(*(s.sha for s in backend._scripts.values())) == [
        name in ("try_acquire", "connections") for name in backend._scripts
    ]


async def test_without_now_the_servers_clock_is_the_bucket_clock(
    redis_url: str, prefix: str, key: str
) -> None:
    params = AdaptiveParams(strikes=1, suspend_for=100.0)
    backend = await RedisThrottleBackend.connect(redis_url, params=params, key_prefix=prefix)
    try:
        server_now = await backend.server_time()
        # the loopback server shares this machine's wall clock (not time.monotonic)
        assert server_now == pytest.approx(time.time(), abs=1.0)
        state = await backend.report_throttled(key)
        assert state.suspended_until == pytest.approx(server_now + 100.0, abs=0.5)
        status = await backend.state(key)
        assert status.suspended_until == state.suspended_until
        assert status.suspended_for == pytest.approx(100.0, abs=0.5)
    finally:
        await backend.close()


async def test_a_given_clock_replaces_the_servers(redis_url: str, prefix: str, key: str) -> None:
    clock = [5_000.0]
    backend = await RedisThrottleBackend.connect(
        redis_url, key_prefix=prefix, clock=lambda: clock[0]
    )
    try:
        limits = Limits(messages=1, period=10.0)
        assert await backend.try_acquire(key, limits) == 0.0
        assert await backend.try_acquire(key, limits) == 10.0
        clock[0] = 5_007.5
        assert await backend.try_acquire(key, limits) == 2.5
        assert (await backend.report_throttled(key)).last_update == 5_007.5
    finally:
        await backend.close()


async def test_key_prefixes_keep_deployments_apart(redis_url: str, key: str) -> None:
    limits = Limits(messages=1, period=60.0)
    one, two = [
        await RedisThrottleBackend.connect(redis_url, key_prefix=f"{uuid.uuid4().hex}:")
        for _ in range(2)
    ]
    try:
        assert await one.try_acquire(key, limits, now=T0) == 0.0
        assert await one.try_acquire(key, limits, now=T0) > 0.0
        assert await two.try_acquire(key, limits, now=T0) == 0.0
    finally:
        await one.close()
        await two.close()


async def test_arguments_are_checked_and_a_closed_backend_refuses_calls(
    redis_url: str, key: str
) -> None:
    backend = RedisThrottleBackend(redis_url)
    with pytest.raises(ValueError, match="ttl"):
        await backend.acquire_connection(key, 1, "n", 0.0)
    with pytest.raises(ValueError, match="ttl"):
        await backend.renew_connection(key, "lease", -1.0)
    with pytest.raises(ValueError, match="n must be"):
        await backend.try_acquire(key, Limits(), 0)
    await backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        await backend.try_acquire(key, Limits())
    with pytest.raises(RuntimeError, match="closed"):
        await backend.state(key)
