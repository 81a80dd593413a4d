"""Epochs of the Redis throttle backend: a server that may have lost connection leases
grants no new slot for one lease lifetime, while holders re-register theirs.

Real ``redis-server`` processes: one restarted empty on the same port, and a replica
promoted to primary (it knows the old leases, but not that it is a new server).
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from postline.throttle.redis import RedisThrottleBackend
from support.redisserver import RedisServer, require_redis

TTL = 2.0


async def _until_granted(
    backend: RedisThrottleBackend,
    key: str,
    limit: int,
    keep: tuple[RedisThrottleBackend, str] | None = None,
) -> float:
    """Seconds until a new slot is granted (the quarantine left); the lease is released.
    ``keep``: a holder and its lease, renewed meanwhile."""
    t0 = time.monotonic()
    while (lease := await backend.acquire_connection(key, limit, "late", TTL)) is None:
        assert time.monotonic() - t0 < 3 * TTL, "quarantine never ended"
        if keep is not None:
            assert await keep[0].renew_connection(key, keep[1], TTL)
        await asyncio.sleep(0.05)
    await backend.release_connection(key, lease)
    return time.monotonic() - t0


async def test_a_server_restarted_empty_quarantines_and_holders_re_register() -> None:
    with RedisServer(require_redis()) as server:
        a = await RedisThrottleBackend.connect(server.url, quarantine=True)
        b = await RedisThrottleBackend.connect(server.url, quarantine=True)
        try:
            # A server never used before is a new epoch too.
            assert await a.acquire_connection("dest", 2, "a", TTL) is None
            await _until_granted(a, "dest", 2)
            held = await a.acquire_connection("dest", 2, "a", TTL)
            assert held is not None
            first = a.epoch

            server.kill()
            server.start(port=server.port)  # same address, nothing in it

            # The new server does not know the lease; nobody gets a new slot...
            assert await b.acquire_connection("dest", 2, "b", TTL) is None
            assert await b.connections("dest") == 0
            # ...but its holder keeps it: re-registered with the new epoch.
            assert await a.renew_connection("dest", held, TTL)
            assert a.epoch != first
            assert await b.connections("dest") == 1
            # A lease nobody granted is not invented, quarantine or not.
            assert not await b.renew_connection("dest", "forged@b", TTL)
            # Once the quarantine is over, the limit counts the re-registered slot.
            waited = await _until_granted(b, "dest", 2, keep=(a, held))
            assert waited > TTL / 2
            assert await b.acquire_connection("dest", 1, "b", TTL) is None
            # After the quarantine a lost lease is lost: its slot may be someone else's.
            await a.release_connection("dest", held)
            stale = await a.acquire_connection("dest", 2, "a", TTL)
            assert stale is not None
            raw = aioredis.Redis.from_url(server.url)
            await raw.delete(a.keys("dest").leases)
            await raw.aclose()
            assert not await a.renew_connection("dest", stale, TTL)
        finally:
            await a.close()
            await b.close()


async def test_a_promoted_replica_begins_a_new_epoch() -> None:
    with RedisServer(require_redis()) as primary, RedisServer(require_redis()) as replica:
        r = aioredis.Redis.from_url(replica.url)
        try:
            await r.replicaof(primary.host, primary.port)
            deadline = time.monotonic() + 20
            while (await r.info("replication")).get("master_link_status") != "up":
                assert time.monotonic() < deadline, "the replica never synchronised"
                await asyncio.sleep(0.05)
            node = await RedisThrottleBackend.connect(primary.url, quarantine=True)
            await _until_granted(node, "dest", 1)
            held = await node.acquire_connection("dest", 1, "node", TTL)
            assert held is not None
            deadline = time.monotonic() + 10
            while not await r.exists(node.keys("dest").leases):
                assert time.monotonic() < deadline, "the replica never caught up"
                await asyncio.sleep(0.05)
            # Failover: the replica becomes the primary (it has the lease and the old
            # primary's fence record, but it is another server).
            await r.replicaof("NO", "ONE")
            primary.kill()
            other = await RedisThrottleBackend.connect(replica.url, quarantine=True)
            try:
                assert await other.acquire_connection("dest", 2, "other", TTL) is None
                assert other.epoch not in ("", node.epoch)
            finally:
                await other.close()
            await node.close()
        finally:
            await r.aclose()
