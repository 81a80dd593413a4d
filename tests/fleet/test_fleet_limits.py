"""Fleet mode: two `postline serve` nodes on one PostgreSQL and one Redis hold one
tenant's rate limit and one tenant's daily quota together, not each on its own, and a
key's rate limit changed through one node's admin API holds on the other within its
``[api] key_cache_ttl``."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx

from postline.control.tokens import generate_token, hash_token
from postline.store.base import LimitOverrides
from postline.store.postgres.backend import PostgresStore
from postline.tenants import generate_key, hash_key, key_prefix
from support import pgserver, redisserver
from support.node import NodeProcess, free_port, node_toml

pg_server = pgserver.pg_server
pg_dsn = pgserver.pg_dsn
redis_server = redisserver.redis_server
redis_url = redisserver.redis_url

RATE, BURST, DAILY = 1, 10, 12


KEY_CACHE_TTL = 2.0


def _config(tmp: Path, name: str, dsn: str, redis: str) -> Path:
    path = tmp / name / "node.toml"
    path.parent.mkdir(parents=True)
    extra = f'[delivery]\nenabled = false\n[throttle]\nbackend = "{redis}"\n'
    text = node_toml(
        path.parent / "data",
        extra,
        api=f"127.0.0.1:{free_port()}",
        api_extra=f'key_cache_ttl = "{KEY_CACHE_TTL:g}s"',
        top_extra=f'store = "{dsn}"',
    ).replace('node_id = "test-node"', f'node_id = "{name}"')
    path.write_text(text.replace("[submission]\n", "[submission]\nenabled = false\n"))
    return path


async def _tenants(dsn: str) -> dict[str, str]:
    """Two tenants with limits of their own: name → API key."""
    store = PostgresStore(dsn)
    await store.open()
    try:
        out = {}
        for name, limits in (
            ("rated", LimitOverrides(rate=RATE, burst=BURST)),
            ("quota", LimitOverrides(daily=DAILY)),
        ):
            tenant = await store.create_tenant(name)
            await store.set_tenant_limits(tenant.id, limits)
            key = generate_key()
            await store.add_api_key(tenant.id, hash_key(key), key_prefix(key))
            out[name] = key
        return out
    finally:
        await store.close()


@asynccontextmanager
async def _two_nodes(tmp: Path, dsn: str, redis: str) -> AsyncIterator[list[str]]:
    nodes = [
        NodeProcess(cfg, cfg.with_name("node.log"))
        for cfg in (_config(tmp, f"node-{i + 1}", dsn, redis) for i in range(2))
    ]
    async with AsyncExitStack() as stack:
        for node in nodes:
            await asyncio.to_thread(node.start)
            stack.push_async_callback(asyncio.to_thread, node.terminate)
        yield [f"http://{node.ready['api']}" for node in nodes]


def _msg(i: int) -> dict[str, object]:
    return {"from": "app@acme.test", "to": [f"r{i}@example.test"], "subject": "s", "text": "t"}


async def test_two_nodes_share_a_tenants_rate_and_its_daily_quota(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    keys = await _tenants(pg_dsn)
    async with _two_nodes(tmp_path, pg_dsn, redis_url) as urls:
        rated = [
            httpx.AsyncClient(base_url=u, headers={"Authorization": f"Bearer {keys['rated']}"})
            for u in urls
        ]
        quota = [
            httpx.AsyncClient(base_url=u, headers={"Authorization": f"Bearer {keys['quota']}"})
            for u in urls
        ]
        try:
            # The rate: 30 requests alternating between the nodes. Each node alone would
            # grant its own burst of 10 (20 in all); together they grant one burst and
            # what the rate refilled meanwhile.
            started = time.monotonic()
            codes = [
                (await rated[i % 2].post("/v1/messages", json=_msg(i))).status_code
                for i in range(30)
            ]
            elapsed = time.monotonic() - started
            accepted = codes.count(202)
            assert set(codes) == {202, 429}
            assert BURST <= accepted <= BURST + math.floor(RATE * elapsed), (accepted, elapsed)
            assert accepted < 2 * BURST
            assert {c for i, c in enumerate(codes) if i % 2 == 0} == {202, 429}
            assert {c for i, c in enumerate(codes) if i % 2 == 1} == {202, 429}

            # The quota: 30 requests racing over both nodes; exactly the quota goes in.
            answers = await asyncio.gather(
                *(quota[i % 2].post("/v1/messages", json=_msg(i)) for i in range(30))
            )
            assert sorted(r.status_code for r in answers) == [202] * DAILY + [403] * (30 - DAILY)
            for client in quota:
                usage = (await client.get("/v1/usage")).json()["usage"]["day"]
                assert (usage["used"], usage["remaining"]) == (DAILY, 0)
        finally:
            for client in rated + quota:
                await client.aclose()


async def test_a_key_limit_changed_on_one_node_holds_on_the_other(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    store = PostgresStore(pg_dsn)
    await store.open()
    try:
        tenant = await store.create_tenant("app")
        secret = generate_key()
        key = await store.add_api_key(tenant.id, hash_key(secret), key_prefix(secret))
        token = generate_token()
        await store.add_admin_token("ops", hash_token(token), token[:11])
    finally:
        await store.close()
    async with _two_nodes(tmp_path, pg_dsn, redis_url) as urls:
        admin = httpx.AsyncClient(base_url=urls[0], headers={"Authorization": f"Bearer {token}"})
        second = httpx.AsyncClient(base_url=urls[1], headers={"Authorization": f"Bearer {secret}"})
        try:
            # Node 2 knows the key (and caches it) with no limit of its own.
            for i in range(3):
                assert (await second.post("/v1/messages", json=_msg(i))).status_code == 202
            r = await admin.patch(
                f"/admin/v1/tenants/{tenant.id}/keys/{key.id}",
                json={"rate_per_second": 1, "burst": 1},
            )
            assert r.status_code == 200, r.text
            changed = time.monotonic()
            # Within key_cache_ttl node 2 reads the key again and holds it to 1/s.
            while True:
                r = await second.post("/v1/messages", json=_msg(99))
                if r.status_code == 429:
                    break
                assert r.status_code == 202, r.text
                assert time.monotonic() - changed < KEY_CACHE_TTL + 1.5, "never limited"
                await asyncio.sleep(0.1)
            assert r.json()["limit"] == "key" and r.json()["rate"] == 1
        finally:
            await admin.aclose()
            await second.aclose()
