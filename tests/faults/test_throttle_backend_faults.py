"""A destination's connection limit holds while the shared Redis throttle backend fails.

Three ``postline serve`` nodes on one PostgreSQL and one real ``redis-server`` deliver a
continuous stream of mail to one simulated destination limited to 3 connections (the
sim counts the connections open at once on its side of the wire). Mid-run:

* Redis is killed and restarted EMPTY on the same port: the connections opened before
  must not keep sending beside the ones the new server grants;
* one node is cut off from Redis (a proxy in front of it swallows every byte) while the
  others keep it: its slot leases lapse in Redis, and it must stop using them first.

The limit is never exceeded, not even for a moment, delivery resumes and every message
arrives (duplicates from a connection closed mid-transaction are allowed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from postline.sim.config import SimConfig
from postline.sim.profiles import Profile
from postline.sim.runner import Simulator
from support import pgserver
from support.e2e import domain, rules_toml
from support.node import NodeProcess, free_port, node_toml
from support.outage import tenant_key
from support.redisserver import RedisServer, require_redis
from support.tcpproxy import BlackHoleProxy

# Over a minute each: `make faults` runs them, `make test` does not.
pytestmark = pytest.mark.long

pg_server = pgserver.pg_server
pg_dsn = pgserver.pg_dsn

DOMAIN = "limited.faults.test"
LIMIT = 3
BACKLOG = 200  # messages accepted and not yet delivered, at most


def _config(tmp: Path, name: str, sim: Simulator, dsn: str, redis: str, lease: float) -> Path:
    rules = [
        {
            "name": "limited",
            "domains": [DOMAIN],
            "connections": LIMIT,
            "messages_per_connection": 25,
        }
    ]
    extra = f"""
[node]
workers = 1
[dns]
nameservers = ["{sim.dns_address}"]
min_ttl = "1s"
[delivery]
smtp_port = {sim.smtp_port}
helo_hostname = "{name}.postline.test"
idle_timeout = "2s"
tls = "disabled"
[retry]
first = "1s"
max_interval = "2s"
[queue]
lease_time = "20s"
scan_interval = "300ms"
[throttle]
backend = "{redis}"
connection_lease = "{lease:g}s"
{rules_toml(rules)}"""
    path = tmp / name / "node.toml"
    path.parent.mkdir(parents=True)
    text = node_toml(
        path.parent / "data",
        extra,
        api=f"127.0.0.1:{free_port()}",
        top_extra=f'store = "{dsn}"',
    ).replace('node_id = "test-node"', f'node_id = "{name}"')
    path.write_text(text.replace("[submission]\n", "[submission]\nenabled = false\n"))
    return path


@asynccontextmanager
async def _fleet(
    tmp: Path, dsn: str, sim: Simulator, redis_urls: Sequence[str], lease: float
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One node per Redis URL (``node-1`` …), and an API client for each."""
    key = await tenant_key(dsn, "faults")
    nodes = [
        NodeProcess(cfg, cfg.with_name("node.log"))
        for cfg in (
            _config(tmp, f"node-{i + 1}", sim, dsn, url, lease) for i, url in enumerate(redis_urls)
        )
    ]
    async with AsyncExitStack() as stack:
        for node in nodes:
            await asyncio.to_thread(node.start)
            stack.push_async_callback(asyncio.to_thread, node.kill)
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=f"http://{node.ready['api']}",
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=30,
                )
            )
            for node in nodes
        ]


class _Traffic:
    """Mail to DOMAIN through every node in turn, a batch every 0.2 s while fewer than
    BACKLOG messages wait, until stopped; meanwhile the connections open at the sink are
    sampled."""

    def __init__(self, clients: Sequence[httpx.AsyncClient], sim: Simulator) -> None:
        self.clients = clients
        self.sim = sim
        self.accepted = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.t0 = time.monotonic()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._submit()), loop.create_task(self._sample())]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _submit(self) -> None:
        i = 0
        while not self._stop.is_set():
            if self.accepted - self.sim.recorder.accepted_count(DOMAIN) >= BACKLOG:
                await asyncio.sleep(0.05)
                continue
            client = self.clients[i % len(self.clients)]
            messages = [
                {"from": "app@faults-sender.test", "to": [f"u{i}-{j}@{DOMAIN}"], "text": "hi"}
                for j in range(12)
            ]
            r = await client.post("/v1/messages/batch", json={"messages": messages})
            assert r.status_code == 202, r.text
            self.accepted += int(r.json()["accepted"])
            i += 1
            await asyncio.sleep(0.2)

    async def _sample(self) -> None:
        while not self._stop.is_set():
            self.samples.append(
                (time.monotonic() - self.t0, self.sim.recorder.open_connections("domain", DOMAIN))
            )
            await asyncio.sleep(0.02)

    def peak(self) -> tuple[int, float]:
        """The most connections the sink had open at once, and when first (seconds)."""
        most = self.sim.recorder.peak_connections("domain", DOMAIN)
        when = next((t for t, n in self.samples if n == most), -1.0)
        return most, when

    async def delivered_after(self, count: int, timeout: float) -> None:
        """Wait until the sink accepted ``count`` more messages."""
        goal = self.sim.recorder.accepted_count(DOMAIN) + count
        deadline = time.monotonic() + timeout
        while self.sim.recorder.accepted_count(DOMAIN) < goal:
            assert time.monotonic() < deadline, "delivery did not resume"
            await asyncio.sleep(0.05)

    async def busy(self, timeout: float) -> None:
        """Wait until every slot is in use (LIMIT connections open at the sink)."""
        deadline = time.monotonic() + timeout
        while self.sim.recorder.open_connections("domain", DOMAIN) < LIMIT:
            assert time.monotonic() < deadline, "the destination's slots are never all used"
            await asyncio.sleep(0.01)

    async def all_delivered(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.sim.report().accepted_pairs()) < self.accepted:
            got = len(self.sim.report().accepted_pairs())
            assert time.monotonic() < deadline, f"{got} of {self.accepted} delivered"
            await asyncio.sleep(0.25)


def _sim() -> Simulator:
    # Every SMTP reply takes 30 ms: connections stay busy, and all 3 slots in use.
    return Simulator(SimConfig(domains=(domain(DOMAIN, Profile(name="slow", tarpit=0.03)),)))


async def _leases_held_by(url: str, holder: str) -> int:
    """The connection leases in Redis whose id names ``holder``."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        held = 0
        async for key in client.scan_iter(match="*:leases"):
            held += sum(1 for m in await client.zrange(key, 0, -1) if m.endswith(f"@{holder}"))
        return held
    finally:
        await client.aclose()


@pytest.mark.slow
async def test_limit_holds_when_redis_restarts_empty(tmp_path: Path, pg_dsn: str) -> None:
    """Killed for 5 s and back empty: slots of connections that outlived the outage are
    re-registered or those connections closed; nobody opens more meanwhile."""
    sim = _sim()
    await sim.start()
    redis = RedisServer(require_redis())
    redis.start()
    try:
        # A lease of 8 s: a connection's slot is proven for 6 s after its last renewal
        # (every 2.7 s), so across a 5 s outage some slots re-register and some close.
        async with _fleet(tmp_path, pg_dsn, sim, [redis.url] * 3, lease=8.0) as clients:
            traffic = _Traffic(clients, sim)
            traffic.start()
            await traffic.delivered_after(150, timeout=40)
            await traffic.busy(timeout=20)

            redis.kill()
            await asyncio.sleep(5.0)
            redis.start(port=redis.port)  # the same address, nothing in it
            await traffic.delivered_after(150, timeout=40)

            await traffic.stop()
            most, when = traffic.peak()
            print(f"\npeak {most} connections at {when:.1f}s; {traffic.accepted} messages")
            await traffic.all_delivered(timeout=40)
            assert most <= LIMIT, f"{most} connections at once ({when:.1f}s into the run)"
    finally:
        redis.stop()
        await sim.stop()


@pytest.mark.slow
async def test_limit_holds_when_one_node_loses_redis(tmp_path: Path, pg_dsn: str) -> None:
    """One node cut off from Redis while it holds a slot: it must give the slot up
    before its lease lapses in Redis and another node takes it."""
    sim = _sim()
    await sim.start()
    redis = RedisServer(require_redis())
    redis.start()
    proxy = BlackHoleProxy(redis.host, redis.port)
    await proxy.start()
    try:
        urls = [redis.url, redis.url, proxy.url]
        async with _fleet(tmp_path, pg_dsn, sim, urls, lease=6.0) as clients:
            traffic = _Traffic(clients, sim)
            traffic.start()
            await traffic.delivered_after(100, timeout=40)
            deadline = time.monotonic() + 30
            await traffic.busy(timeout=20)
            while not await _leases_held_by(redis.url, "node-3"):
                assert time.monotonic() < deadline, "node-3 never held a slot"
                await asyncio.sleep(0.05)

            proxy.black_hole()
            # Its leases lapse within 6 s; the others take the slots and send.
            await asyncio.sleep(7.0)
            assert not await _leases_held_by(redis.url, "node-3")
            await traffic.delivered_after(100, timeout=30)
            proxy.heal()

            await traffic.stop()
            most, when = traffic.peak()
            print(f"\npeak {most} connections at {when:.1f}s; {traffic.accepted} messages")
            await traffic.all_delivered(timeout=40)
            assert most <= LIMIT, f"{most} connections at once ({when:.1f}s into the run)"
    finally:
        await proxy.stop()
        redis.stop()
        await sim.stop()
