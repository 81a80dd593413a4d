"""Two backends on one Redis are two nodes of a fleet: they share every limit."""

from __future__ import annotations

import asyncio
import time

import pytest

from postline.throttle.redis import RedisThrottleBackend
from postline.throttle.rules import Limits

T0 = 1_000_000.0


async def test_the_connection_limit_holds_across_two_nodes(
    nodes: list[RedisThrottleBackend], key: str
) -> None:
    a, b = nodes
    results = await asyncio.gather(
        *(
            node.acquire_connection(key, 3, f"node-{i % 2}", 30.0)
            for i in range(20)
            for node in (a, b)
        )
    )
    leases = [r for r in results if r is not None]
    assert len(leases) == 3
    assert len(set(leases)) == 3
    assert await a.connections(key) == 3
    assert await b.connections(key) == 3
    # a slot freed by one node can be taken by the other
    await a.release_connection(key, leases[0])
    assert await b.acquire_connection(key, 3, "node-b", 30.0) is not None
    assert await a.acquire_connection(key, 3, "node-a", 30.0) is None


async def test_a_crashed_nodes_lease_expires_and_frees_its_slot(
    redis_url: str, prefix: str, nodes: list[RedisThrottleBackend], key: str
) -> None:
    crashed = await RedisThrottleBackend.connect(redis_url, key_prefix=prefix)
    lease = await crashed.acquire_connection(key, 1, "crashed-node", 0.4)
    assert lease is not None
    await crashed.close()  # gone without releasing its slot
    survivor = nodes[0]
    started = time.monotonic()
    assert await survivor.acquire_connection(key, 1, "survivor", 30.0) is None
    assert (await survivor.state(key)).connections == 1
    while (taken := await survivor.acquire_connection(key, 1, "survivor", 30.0)) is None:
        assert time.monotonic() - started < 2.0, "the crashed node's lease never expired"
        await asyncio.sleep(0.02)
    assert taken is not None
    assert time.monotonic() - started >= 0.3  # not before the lease's ttl (less RTTs)
    # the crashed node's lease id is gone for good: renewing it fails
    assert await survivor.renew_connection(key, lease, 30.0) is False


async def test_gcra_across_two_nodes_admits_no_more_than_the_rate(
    nodes: list[RedisThrottleBackend], key: str
) -> None:
    limits = Limits(messages=200, period=1.0, burst=5)
    granted = [0, 0]

    async def sender(node: int, until: float) -> None:
        backend = nodes[node]
        while time.monotonic() < until:
            wait = await backend.try_acquire(key, limits)
            if wait == 0.0:
                granted[node] += 1
            else:
                await asyncio.sleep(min(wait, 0.005))

    start = await nodes[0].server_time()
    until = time.monotonic() + 1.0
    await asyncio.gather(*(sender(i % 2, until) for i in range(8)))
    elapsed = await nodes[0].server_time() - start
    total = sum(granted)
    ceiling = 5 + 200 * elapsed
    assert total <= ceiling + 1, (total, elapsed)
    assert total >= 0.8 * 200 * elapsed, (total, elapsed)  # the senders did keep up
    assert min(granted) > 0  # both nodes took part (not necessarily fairly)


async def test_a_slow_down_reported_by_one_node_slows_every_node(
    nodes: list[RedisThrottleBackend], key: str
) -> None:
    a, b = nodes
    limits = Limits(messages=10, period=1.0, burst=1)
    assert await b.try_acquire(key, limits) == 0.0
    assert await b.try_acquire(key, limits) == pytest.approx(0.1, abs=0.02)
    state = await a.report_throttled(key)
    assert state.factor == 0.5
    assert (await b.state(key)).factor == 0.5
    await asyncio.sleep(0.2)  # let the bucket empty
    assert await b.try_acquire(key, limits) == 0.0
    assert await b.try_acquire(key, limits) == pytest.approx(0.2, abs=0.02)


async def test_strikes_from_different_nodes_add_up_to_a_suspension(
    nodes: list[RedisThrottleBackend], key: str
) -> None:
    a, b = nodes
    await a.report_throttled(key, now=T0)
    await b.report_throttled(key, now=T0 + 2)
    assert (await a.state(key, now=T0 + 2)).strikes == 2
    state = await a.report_throttled(key, now=T0 + 4)
    assert state.suspended_until == T0 + 4 + a.params.suspend_for
    assert await b.try_acquire(key, Limits(messages=10), now=T0 + 5) == pytest.approx(299.0)
    assert (await b.state(key, now=T0 + 5)).suspended_for == pytest.approx(299.0)
