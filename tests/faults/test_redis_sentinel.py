"""The Redis throttle backend behind Sentinel: a master fails, its replica is promoted, and
the nodes follow it by themselves without breaking a limit.

Real servers on loopback: a master, a replica that replicates through a proxy (so the
test can hold back what the replica receives), and one sentinel with quorum 1 and short
timings. Three backends (nodes a, b, c) use the ``redis+sentinel://`` URL with fencing on.
The replica misses b's lease (granted while the proxy swallowed replication), so the
promoted replica knows one slot of two: without the quarantine, c would be given a third
connection while a and b still use theirs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis

from postline.errors import ThrottleUnavailable
from postline.throttle.redis import RedisThrottleBackend
from postline.throttle.rules import Limits
from support.redisserver import RedisSentinel, RedisServer, require_redis
from support.tcpproxy import BlackHoleProxy

TTL = 2.0
LIMIT = 2
DEST = "mx.example:slots"
RATE = Limits(messages=5, period=60.0, burst=5)
FAILOVER_BOUND = 15.0  # seconds from the master's death until every node is back


@dataclass
class Slots:
    """What the nodes believe they hold: lease -> when it was last confirmed. A holder
    trusts a slot for TTL after its last confirmation (deliver.site), so that is how long
    it counts against the limit."""

    confirmed: dict[str, float] = field(default_factory=dict)
    peak: int = 0

    def live(self) -> int:
        now = time.monotonic()
        return sum(1 for t in self.confirmed.values() if now < t + TTL)

    def confirm(self, lease: str, sent: float) -> None:
        self.confirmed[lease] = sent
        self.peak = max(self.peak, self.live())
        assert self.live() <= LIMIT, f"{self.live()} slots in use, limit {LIMIT}"

    def drop(self, lease: str) -> None:
        self.confirmed.pop(lease, None)


async def _wait_for(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)


async def test_a_sentinel_failover_keeps_the_limits_and_reports_unavailable() -> None:
    binary = require_redis()
    # A full sync starts at once (Redis waits 5 s for more replicas by default).
    with RedisServer(binary, args=["--repl-diskless-sync-delay", "0"]) as master:
        proxy = BlackHoleProxy(master.host, master.port)
        await proxy.start()
        replica_of = ["--replicaof", proxy.host, str(proxy.port)]
        try:
            with RedisServer(binary, args=replica_of) as replica:
                raw_replica = aioredis.Redis(host=replica.host, port=replica.port)
                try:

                    async def replica_synced() -> bool:
                        info = await raw_replica.info("replication")
                        return bool(info.get("master_link_status") == "up")

                    await _wait_for("replica in sync", replica_synced)
                    # The sentinel learns of the replica from the master's INFO on its
                    # first visit.
                    with RedisSentinel("throttle", master, binary=binary) as sentinel:
                        await _failover(master, sentinel, proxy)
                finally:
                    await raw_replica.aclose()
        finally:
            await proxy.stop()


async def _failover(
    master: RedisServer,
    sentinel: RedisSentinel,
    proxy: BlackHoleProxy,
) -> None:
    raw_master = aioredis.Redis(host=master.host, port=master.port)
    watcher = aioredis.Redis(host=sentinel.host, port=sentinel.port)
    nodes = [await RedisThrottleBackend.connect(sentinel.url, quarantine=True) for _ in range(3)]
    a, b, c = nodes
    try:

        async def sentinel_knows_replica() -> bool:
            return bool(await watcher.sentinel_slaves("throttle"))

        await _wait_for("sentinel sees the replica", sentinel_knows_replica, timeout=20)

        # A master never used before is a new epoch: wait out its quarantine.
        async def granted() -> bool:
            lease = await c.acquire_connection(DEST, LIMIT, "c", TTL)
            if lease is not None:
                await c.release_connection(DEST, lease)
            return lease is not None

        await _wait_for("first quarantine over", granted, timeout=3 * TTL)
        before = a.epoch
        slots = Slots()

        # Rate limits: the bucket's five are taken, and the replica has that.
        for _ in range(5):
            assert await a.try_acquire("rate", RATE) == 0.0
        assert await b.try_acquire("rate", RATE) > 0.0
        # A call beyond the pool's connections waits for one rather than failing.
        many = await asyncio.gather(*(a.connections(DEST) for _ in range(250)))
        assert many == [0] * 250

        sent = time.monotonic()
        a1 = await a.acquire_connection(DEST, LIMIT, "a", TTL)
        assert a1 is not None
        slots.confirm(a1, sent)
        assert await raw_master.wait(1, 2000) == 1  # the replica has a1 and "rate"

        # From here the replica hears nothing: b's lease stays on the master alone.
        proxy.black_hole()
        sent = time.monotonic()
        b1 = await b.acquire_connection(DEST, LIMIT, "b", TTL)
        assert b1 is not None
        slots.confirm(b1, sent)
        assert await c.acquire_connection(DEST, LIMIT, "c", TTL) is None

        master.kill()
        killed = time.monotonic()
        unavailable = 0
        back: set[str] = set()
        c_lease: str | None = None
        # Every node keeps doing what a node does: c asks for a slot, the holders
        # renew theirs (a holder trusts its slot until TTL after its last renewal).
        while len(back) < 3:
            assert time.monotonic() - killed < FAILOVER_BOUND, f"back: {back}"
            sent = time.monotonic()
            try:
                c_lease = await c.acquire_connection(DEST, LIMIT, "c", TTL)
                back.add("c")
            except ThrottleUnavailable:
                unavailable += 1
            if c_lease is not None:
                slots.confirm(c_lease, sent)
            for name, node, lease in (("a", a, a1), ("b", b, b1)):
                sent = time.monotonic()
                try:
                    if await node.renew_connection(DEST, lease, TTL):
                        slots.confirm(lease, sent)
                    else:
                        slots.drop(lease)
                    back.add(name)
                except ThrottleUnavailable:
                    unavailable += 1
            await asyncio.sleep(0.1)
        recovered = time.monotonic() - killed

        assert unavailable > 0, "the failover was never noticed"
        # The promoted replica is a new epoch; both holders kept their slots (b's
        # re-registered), and c got none.
        assert a.epoch not in ("", before)
        assert a.epoch == b.epoch == c.epoch
        assert a1 in slots.confirmed and b1 in slots.confirmed
        assert c_lease is None
        assert await c.connections(DEST) == LIMIT
        # The rate state came across: the bucket is still empty.
        assert await c.try_acquire("rate", RATE) > 0.0

        # Past the quarantine the limit holds with the re-registered slots...
        until = time.monotonic() + 1.5 * TTL
        while time.monotonic() < until:
            for node, lease in ((a, a1), (b, b1)):
                sent = time.monotonic()
                assert await node.renew_connection(DEST, lease, TTL)
                slots.confirm(lease, sent)
            assert await c.acquire_connection(DEST, LIMIT, "c", TTL) is None
            await asyncio.sleep(0.1)
        # ...and a slot given back is granted again.
        await b.release_connection(DEST, b1)
        slots.drop(b1)
        sent = time.monotonic()
        c1 = await c.acquire_connection(DEST, LIMIT, "c", TTL)
        assert c1 is not None
        slots.confirm(c1, sent)
        assert slots.peak == LIMIT
        assert recovered < FAILOVER_BOUND
    finally:
        for node in nodes:
            await node.close()
        for client in (raw_master, watcher):
            await client.aclose()


async def test_no_master_is_unavailable_not_a_crash() -> None:
    """A sentinel that knows no such service: every call is ThrottleUnavailable."""
    with (
        RedisServer(require_redis()) as master,
        RedisSentinel("throttle", master) as sentinel,
    ):
        url = sentinel.url.replace("/throttle", "/elsewhere")
        with pytest.raises(ThrottleUnavailable, match="No master found for 'elsewhere'"):
            await RedisThrottleBackend.connect(url, timeout=0.5)
