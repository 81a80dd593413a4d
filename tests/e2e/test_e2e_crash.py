"""Crash safety: ``kill -9`` of a node loses no accepted mail and duplicates only what was
in flight.

The node runs as a subprocess (``postline serve``) against the sim in this test's event
loop, so blocking waits on the process run in threads. Leases are 3 s long here: the
recipients the dead node had leased return to the queue by themselves after that, and
the restarted node (same data dir) delivers them.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from postline.config import load_config
from postline.sim.config import SimConfig
from postline.sim.runner import Simulator
from postline.store import create_store
from support.e2e import domain, sim_node_config
from support.node import NodeProcess, cli_tenant, served, wait_for

LEASE_TIME = 3.0
SITE_CONNECTIONS = 5
SITE_RATE = 100  # messages per second per MX site
# Every destination falls to the catch-all: one bucket per MX site.
RULES = [
    {
        "name": "default",
        "scope": "site",
        "connections": SITE_CONNECTIONS,
        "messages": SITE_RATE,
        "period": "1s",
        "burst": 10,
    }
]


def _config(tmp_path: Path, sim: Simulator) -> Path:
    return sim_node_config(tmp_path, sim, RULES, lease_time=LEASE_TIME, scan_interval="100ms")


async def _kill9(node: NodeProcess) -> None:
    assert node.proc is not None
    await asyncio.to_thread(node.kill)  # SIGKILL, then reap
    assert node.proc.returncode == -9


async def _post(
    api: httpx.AsyncClient, addresses: Sequence[str], tag: str
) -> list[tuple[str, str]]:
    """One message per address in one batch; the accepted (Message-ID, recipient) pairs."""
    messages = [
        {"from": "sender@postline.test", "to": [a], "subject": f"{tag}{i}", "text": "hi"}
        for i, a in enumerate(addresses)
    ]
    r = await api.post("/v1/messages/batch", json={"messages": messages})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["accepted"] == len(addresses), body
    return [(item["message_id"], item["recipients"][0]["address"]) for item in body["results"]]


async def _states(api: httpx.AsyncClient) -> dict[str, int]:
    text = (await api.get("/metrics")).text
    found = re.findall(r'^postline_recipients\{state="(\w+)"\} (\S+)$', text, re.M)
    return {state: int(float(n)) for state, n in found if float(n)}


async def _delivered_events(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"type": "delivered", "limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/v1/events", params=params)).json()
        out.extend(page["events"])
        if len(page["events"]) < 1000:
            return out
        cursor = page["next_cursor"]


async def _final_states(config: Path) -> dict[str, int]:
    """The recipient states in the data dir, read with the node stopped."""
    store = create_store(load_config(config, environ={}))
    await store.open()
    try:
        return await store.state_counts()
    finally:
        await store.close()


DOMAINS = ("one.test", "two.test", "three.test", "four.test")


async def test_kill9_mid_delivery_loses_nothing(tmp_path: Path) -> None:
    total = 2000
    sim = Simulator(SimConfig(domains=tuple(domain(d) for d in DOMAINS), seed=7))
    await sim.start()
    try:
        config = _config(tmp_path, sim)
        key = await cli_tenant(config)
        recorder = sim.recorder
        addresses = [f"user{i}@{DOMAINS[i % len(DOMAINS)]}" for i in range(total)]
        t0 = time.monotonic()
        async with served(config, key) as (node, api):
            sent: list[tuple[str, str]] = []
            for i in range(0, total, 500):
                sent += await _post(api, addresses[i : i + 500], "m")
            assert len(set(sent)) == total
            # Kill while delivery is in progress: some hundreds accepted, far from all.
            await wait_for(lambda: len(recorder.records) >= 400, timeout=15, interval=0.005)
            await _kill9(node)
            at_kill = len(recorder.records)
            killed_at = time.monotonic() - t0
            kill_clock = time.time()
        assert 400 <= at_kill < total * 3 // 4, at_kill
        # Delivery was in full swing when the node died.
        last_half_second = sum(1 for r in recorder.records if r.time > kill_clock - 0.5)
        assert last_half_second >= 50, last_half_second

        before = {(r.message_id, r.recipient) for r in recorder.records}
        async with served(config, key) as (node, api):
            restarted_at = time.monotonic() - t0

            async def all_delivered() -> bool:
                return await _states(api) == {"delivered": total}

            await wait_for(all_delivered, timeout=30, interval=0.2)
            done_at = time.monotonic() - t0
            delivered = await _delivered_events(api)
            await asyncio.to_thread(node.terminate)
        assert await _final_states(config) == {"delivered": total}

        report = sim.report()
        pairs = report.accepted_pairs()
        dupes = report.duplicate_count
        in_flight = len(DOMAINS) * SITE_CONNECTIONS
        print(
            f"\ncrash: {total} messages to {len(DOMAINS)} domains; kill -9 at {killed_at:.2f}s "
            f"with {at_kill} accepted by the sim ({last_half_second} in its last 0.5s); "
            f"restart at {restarted_at:.2f}s; all delivered at {done_at:.2f}s; duplicates {dupes} "
            f"({len(report.duplicates)} pairs), connections at once at most {in_flight}"
        )
        # Nothing accepted by the API was lost, nothing else was delivered.
        assert pairs == set(sent)
        assert before <= pairs
        assert report.accepted == total + dupes
        # The node recorded one delivery per recipient, whatever the sim saw twice.
        assert len(delivered) == total
        assert len({e["recipient_id"] for e in delivered}) == total
        # Duplicates are the transactions whose 250 came back while the node died: at most
        # one per open connection, plus outcomes waiting for the group commit, which
        # the rate limits to a fraction of a second's worth.
        assert {d.count for d in report.duplicates} <= {2}
        assert dupes <= in_flight + len(DOMAINS) * SITE_RATE // 4, dupes
        # Duplicates are only messages the sim had accepted by the time of the kill.
        assert {(d.message_id, d.recipient) for d in report.duplicates} <= before
    finally:
        await sim.stop()


async def test_kill9_right_after_202_delivers_the_batch(tmp_path: Path) -> None:
    """The 202 of a batch means durable: a node killed at once delivers it after restart.

    half.test is paused, so none of its mail can leave before the kill; the other half
    goes to flow.test, whose route the node already knows, so it leases that mail on
    enqueue and hands it to delivery at once (the lease then outlives the node).
    """
    sim = Simulator(SimConfig(domains=(domain("half.test"), domain("flow.test")), seed=7))
    await sim.start()
    try:
        config = _config(tmp_path, sim)
        key = await cli_tenant(config)
        addresses = [f"user{i}@{('half.test', 'flow.test')[i % 2]}" for i in range(1000)]
        async with served(config, key) as (node, api):
            r = await api.post("/v1/queues/half.test/pause")
            assert r.status_code == 200, r.text
            sent = await _post(api, ["first@flow.test"], "w")
            await wait_for(lambda: sim.recorder.accepted_count("flow.test") == 1, 10)
            sent += await _post(api, addresses, "b")
            await _kill9(node)
        early = len(sim.recorder.records) - 1
        assert sim.recorder.accepted_count("half.test") == 0

        async with served(config, key) as (node, api):
            r = await api.post("/v1/queues/half.test/resume")
            assert r.status_code == 200, r.text

            async def all_delivered() -> bool:
                return await _states(api) == {"delivered": 1001}

            await wait_for(all_delivered, timeout=20, interval=0.2)
            await asyncio.to_thread(node.terminate)

        report = sim.report()
        print(
            f"\n202 durability: 1000 messages, {early} accepted by the sim before the kill; "
            f"after restart all delivered, duplicates {report.duplicate_count}"
        )
        assert report.accepted_pairs() == set(sent)
        assert report.accepted_by_domain == {
            "flow.test": 501 + report.duplicate_count,
            "half.test": 500,
        }
        assert report.duplicate_count <= early
    finally:
        await sim.stop()
