"""Fleet mode: three `postline serve` nodes on one PostgreSQL and one Redis.

* 30,000 messages to ten simulated domains through all three nodes: the sim's measured
  peak rate and connection count per domain stay within the cluster-wide limits, and
  one node killed with SIGKILL mid-run loses nothing — the others finish its leased work
  once the leases expire; duplicates are counted and bounded by the in-flight window.
* Concurrent requests with one Idempotency-Key spread over the nodes store one message.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from postline.sim.config import SimConfig
from postline.sim.runner import Simulator
from postline.store.postgres.backend import PostgresStore
from postline.tenants import generate_key, hash_key, key_prefix
from support import pgserver, redisserver
from support.e2e import domain, rules_toml
from support.node import NodeProcess, free_port, node_toml

pg_server = pgserver.pg_server
pg_dsn = pgserver.pg_dsn
redis_server = redisserver.redis_server
redis_url = redisserver.redis_url

DOMAINS = [f"d{i}.fleet.test" for i in range(10)]
RATE = 60  # messages per second per domain, for the whole fleet
BURST = 5
CONNECTIONS = 3  # per domain, for the whole fleet
TOTAL = 30_000


def _config(tmp: Path, name: str, sim: Simulator, dsn: str, redis: str) -> Path:
    rules = [
        {
            "name": "fleet",
            "domains": ["*.fleet.test"],
            "scope": "domain",
            "messages": RATE,
            "period": "1s",
            "burst": BURST,
            "connections": CONNECTIONS,
            "messages_per_connection": 200,
        }
    ]
    extra = f"""
[dns]
nameservers = ["{sim.dns_address}"]
min_ttl = "1s"
[delivery]
smtp_port = {sim.smtp_port}
helo_hostname = "{name}.postline.test"
idle_timeout = "2s"
[retry]
first = "1s"
max_interval = "2s"
[queue]
lease_time = "10s"
scan_interval = "200ms"
[throttle]
backend = "{redis}"
# Renewed every 5 s, so only a node stalled for 10 s (three nodes, PostgreSQL and Redis
# share two cores here) loses a slot it still uses; the killed node's slots free after 15 s.
connection_lease = "15s"
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


async def _tenant(dsn: str) -> str:
    store = PostgresStore(dsn)
    await store.open()
    try:
        tenant = await store.create_tenant("fleet")
        key = generate_key()
        await store.add_api_key(tenant.id, hash_key(key), key_prefix(key))
        return key
    finally:
        await store.close()


@asynccontextmanager
async def _fleet(
    tmp: Path, dsn: str, redis: str, sim: Simulator, n: int = 3
) -> AsyncIterator[tuple[list[NodeProcess], list[httpx.AsyncClient]]]:
    key = await _tenant(dsn)
    nodes = [
        NodeProcess(cfg, cfg.with_name("node.log"))
        for cfg in (_config(tmp, f"node-{i + 1}", sim, dsn, redis) for i in range(n))
    ]
    async with AsyncExitStack() as stack:
        for node in nodes:
            await asyncio.to_thread(node.start)
            stack.push_async_callback(asyncio.to_thread, node.terminate)
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=f"http://{node.ready['api']}",
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=60,
                )
            )
            for node in nodes
        ]
        yield nodes, clients


async def _submit(clients: Sequence[httpx.AsyncClient], addresses: Sequence[str]) -> int:
    batches = [addresses[i : i + 1000] for i in range(0, len(addresses), 1000)]

    async def post(i: int, batch: Sequence[str]) -> int:
        messages = [
            {"from": "app@fleet-sender.test", "to": [a], "subject": f"m{i}", "text": "hi"}
            for a in batch
        ]
        r = await clients[i % len(clients)].post("/v1/messages/batch", json={"messages": messages})
        assert r.status_code == 202, r.text
        return int(r.json()["accepted"])

    sem = asyncio.Semaphore(3)

    async def bounded(i: int, batch: Sequence[str]) -> int:
        async with sem:
            return await post(i, batch)

    return sum(await asyncio.gather(*(bounded(i, b) for i, b in enumerate(batches))))


async def _states(client: httpx.AsyncClient) -> dict[str, int]:
    text = (await client.get("/metrics")).text
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("postline_recipients{"):
            state = line.split('"')[1]
            out[state] = int(float(line.rsplit(" ", 1)[1]))
    return {k: v for k, v in out.items() if v}


@pytest.mark.slow
async def test_three_nodes_share_limits_and_survive_a_kill(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    sim = Simulator(SimConfig(domains=tuple(domain(d) for d in DOMAINS), seed=3))
    await sim.start()
    try:
        async with _fleet(tmp_path, pg_dsn, redis_url, sim) as (nodes, clients):
            addresses = [f"user{i}@{DOMAINS[i % len(DOMAINS)]}" for i in range(TOTAL)]
            t0 = time.monotonic()
            accepted = await _submit(clients, addresses)
            assert accepted == TOTAL
            ingest_seconds = time.monotonic() - t0

            # Kill one node while delivery is in full swing.
            while sim.recorder.accepted_count() < TOTAL * 0.4:
                await asyncio.sleep(0.05)
            victim = nodes[2]
            assert victim.proc is not None
            await asyncio.to_thread(victim.kill)
            killed_at = sim.recorder.accepted_count()

            survivors = clients[:2]
            deadline = time.monotonic() + 180
            while True:
                states = await _states(survivors[0])
                if states.get("delivered", 0) >= TOTAL and not states.get("queued"):
                    break
                assert time.monotonic() < deadline, f"not drained: {states}"
                await asyncio.sleep(0.5)
            elapsed = time.monotonic() - t0

            report = sim.report(window=5.0)
            pairs = report.accepted_pairs() if report.records else set()
            distinct = len({(r.message_id, r.recipient) for r in report.records})
            print(
                f"\nfleet: {TOTAL} accepted in {ingest_seconds:.1f}s over 3 nodes, delivered in "
                f"{elapsed:.1f}s; node-3 killed at {killed_at} accepted; duplicates "
                f"{report.duplicate_count}; peak rate/domain (5s) "
                f"{max(report.peak_rate_by_domain.values()):.1f}/s (limit {RATE}); peak "
                f"connections/domain {max(s.peak for s in report.connections_by_domain.values())}"
                f" (limit {CONNECTIONS})"
            )
            assert distinct == TOTAL
            assert len(pairs) == TOTAL
            # Duplicates come only from the killed node's in-flight window: its open
            # transactions plus outcomes not yet committed when it died.
            assert report.duplicate_count <= 300
            for d in DOMAINS:
                assert report.accepted_by_domain[d] >= TOTAL // len(DOMAINS)
                peak = sim.recorder.peak_rate(d, window=5.0)
                assert peak <= RATE * 1.05 + BURST / 5.0, (d, peak)
                assert report.connections_by_domain[d].peak <= CONNECTIONS, d
            # Every node delivered, and events name the node that did it. The event log
            # of a fleet serves an id only once every lower id committed (or timed out),
            # so a reader polls until it has caught up.
            delivered_by: dict[str, int] = {}
            cursor = None
            deadline = time.monotonic() + 30
            while sum(delivered_by.values()) < TOTAL and time.monotonic() < deadline:
                params: dict[str, Any] = {"type": "delivered", "limit": 1000}
                if cursor:
                    params["cursor"] = cursor
                page = (await survivors[1].get("/v1/events", params=params)).json()
                for e in page["events"]:
                    # A node of several workers names each: "node-1.0", "node-1.1", ...
                    node = e["node"].split(".")[0]
                    delivered_by[node] = delivered_by.get(node, 0) + 1
                cursor = page["next_cursor"]
                if len(page["events"]) < 1000:
                    await asyncio.sleep(0.5)
            print(f"delivered per node: {delivered_by}")
            assert set(delivered_by) == {"node-1", "node-2", "node-3"}, delivered_by
            # A recipient sent twice may be recorded delivered twice (at-least-once).
            assert TOTAL <= sum(delivered_by.values()) <= TOTAL + report.duplicate_count
    finally:
        await sim.stop()


async def test_idempotency_key_holds_across_nodes(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    sim = Simulator(SimConfig(domains=(domain("one.fleet.test"),), seed=3))
    await sim.start()
    try:
        async with _fleet(tmp_path, pg_dsn, redis_url, sim) as (_, clients):
            body = {"from": "a@fleet-sender.test", "to": ["x@one.fleet.test"], "text": "hi"}
            headers = {"Idempotency-Key": "order-77"}
            replies = await asyncio.gather(
                *(
                    clients[i % 3].post("/v1/messages", json=body, headers=headers)
                    for i in range(30)
                )
            )
            assert {r.status_code for r in replies} == {202}
            assert len({json.dumps(r.json(), sort_keys=True) for r in replies}) == 1
            deadline = time.monotonic() + 20
            while sim.recorder.accepted_count() < 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
            assert sim.report().accepted == 1
            other = await clients[1].post(
                "/v1/messages", json={**body, "text": "changed"}, headers=headers
            )
            assert other.status_code == 409
    finally:
        await sim.stop()
