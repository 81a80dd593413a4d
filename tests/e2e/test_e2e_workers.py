"""A node of two worker processes (``[node] workers = 2``), run as ``postline serve``.

* limits hold for the node, not per worker: eight domains on one provider's MX hosts are
  split over both workers, and the provider sees no more than the rule's 3 connections
  and 50 messages a second (+ burst), counted by the sim;
* ``/metrics`` is the node's: whichever worker answers, the counters add up to what both
  did;
* ``kill -9`` of one worker mid-delivery: the supervisor starts it again, nothing accepted
  is lost, duplicates stay within what was on the wire;
* ``kill -9`` of the whole node (supervisor and workers) mid-delivery: the same, after a
  restart;
* SIGTERM drains: every worker finishes, writes its outcomes and hands back its leases, so
  a restart sends nothing twice;
* connections are spread over the workers (each has sockets of its own on the node's
  addresses), and while a killed worker is started again the others answer every new one;
* SMTP connection limits hold for the node: a client address gets no more connections from
  two workers than ``max_connections_per_ip``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from postline.config import load_config
from postline.schedule.shares import WorkerShare
from postline.sim.config import SimConfig
from postline.sim.profiles import DomainSpec, MXHostSpec, Profile
from postline.sim.recorder import peak_rate_of
from postline.sim.runner import Simulator
from postline.store import create_store
from support.e2e import domain, sim_node_config
from support.node import NodeProcess, cli_tenant, node_toml, served, wait_for

LEASE_TIME = 3.0


def _config(tmp_path: Path, sim: Simulator, rules: Sequence[dict[str, object]]) -> Path:
    extra = '[node]\nworkers = 2\nshutdown_timeout = "10s"'
    return sim_node_config(
        tmp_path, sim, rules, lease_time=LEASE_TIME, scan_interval="500ms", extra=extra
    )


def _workers(node: NodeProcess) -> list[int]:
    assert node.proc is not None
    children = Path(f"/proc/{node.proc.pid}/task/{node.proc.pid}/children").read_text()
    return [int(p) for p in children.split()]


async def _post(api: httpx.AsyncClient, addresses: Sequence[str]) -> list[tuple[str, str]]:
    messages = [
        {"from": "sender@postline.test", "to": [a], "subject": f"m{i}", "text": "hi"}
        for i, a in enumerate(addresses)
    ]
    r = await api.post("/v1/messages/batch", json={"messages": messages})
    assert r.status_code == 202, r.text
    return [(m["message_id"], m["recipients"][0]["address"]) for m in r.json()["results"]]


def _samples(text: str, name: str) -> dict[str, float]:
    found = re.findall(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M)
    return {labels: float(value) for labels, value in found}


async def _states(api: httpx.AsyncClient) -> dict[str, int]:
    text = (await api.get("/metrics")).text
    found = re.findall(r'^postline_recipients\{state="(\w+)"\} (\S+)$', text, re.M)
    return {state: int(float(n)) for state, n in found if float(n)}


async def _all_delivered(api: httpx.AsyncClient, total: int, timeout: float) -> None:
    async def done() -> bool:
        return await _states(api) == {"delivered": total}

    await wait_for(done, timeout=timeout, interval=0.2)


async def _leased_after_stop(config: Path) -> tuple[dict[str, int], int]:
    """Recipient states, and how many are still leased, read with the node stopped."""
    cfg = load_config(config, environ={})
    store = create_store(cfg)
    await store.open()
    try:
        states = await store.state_counts()
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(cfg.sqlite_path)) as db:
        (leased,) = db.execute(
            "SELECT count(*) FROM recipients WHERE lease_owner IS NOT NULL"
        ).fetchone()
    return states, int(leased)


SHARED = Profile(name="shared", tarpit=0.005)
PROVIDER_DOMAINS = [f"p{i}.test" for i in range(8)]


async def test_two_workers_hold_one_limit_and_report_as_one_node(tmp_path: Path) -> None:
    share = [WorkerShare(i, 2) for i in range(2)]
    owners = {d: share[0].owner(d) for d in PROVIDER_DOMAINS}
    assert set(owners.values()) == {0, 1}, owners  # both workers send to the provider
    specs = [
        DomainSpec(d, mx=(MXHostSpec("mx1.shared.test", 10),), profile=SHARED)
        for d in PROVIDER_DOMAINS
    ]
    rule = {
        "name": "shared",
        "mx": ["*.shared.test"],
        "scope": "rule",
        "connections": 3,
        "messages": 50,
        "period": "1s",
        "burst": 5,
        "messages_per_connection": 20,
    }
    sim = Simulator(SimConfig(domains=tuple(specs), seed=3))
    await sim.start()
    try:
        config = _config(tmp_path, sim, [rule])
        key = await cli_tenant(config)
        total = 400
        addresses = [f"u{i}@{PROVIDER_DOMAINS[i % 8]}" for i in range(total)]
        async with served(config, key, 40.0) as (node, api):
            assert node.ready["workers"] == 2
            t0 = time.monotonic()
            sent = await _post(api, addresses)
            await _all_delivered(api, total, timeout=60)
            elapsed = time.monotonic() - t0
            # Any worker may answer the scrape; each answer is the node's.
            scrapes = [(await api.get("/metrics")).text for _ in range(6)]
            events = await api.get("/v1/events", params={"type": "delivered", "limit": 1000})
            await asyncio.to_thread(node.terminate)
        report = sim.report()
        (provider,) = {sim.hosts["mx1.shared.test"].provider}
        peak = report.connections_by_provider[provider].peak
        rate = max(sim.recorder.peak_rate(d, window=1.0) for d in PROVIDER_DOMAINS)
        times = sorted(r.time for r in report.records)
        provider_rate = peak_rate_of(times, window=1.0)
        print(
            f"\n2 workers, provider rule 3 connections / 50 per s: {total} delivered in "
            f"{elapsed:.2f}s; sim peak {peak} connections, {provider_rate:.0f} messages in "
            f"a 1 s window (busiest domain {rate:.0f})"
        )
        assert report.accepted_pairs() == set(sent)
        assert report.duplicate_count == 0
        assert peak <= 3
        assert provider_rate <= 50 + 5 + 2
        assert elapsed >= (total - 5) / 50 * 0.9
        nodes = {e["node"] for e in events.json()["events"]}
        assert nodes == {"test-node.0", "test-node.1"}, nodes
        for text in scrapes:
            ingested = _samples(text, "postline_ingested_recipients_total")
            assert sum(ingested.values()) == total, ingested
            attempts = _samples(text, "postline_delivery_attempts_total")
            assert attempts.get('{result="delivered"}') == total, attempts
            assert _samples(text, "postline_recipients")['{state="delivered"}'] == total
    finally:
        await sim.stop()


DOMAINS = tuple(f"d{i}.test" for i in range(8))
SITE_CONNECTIONS = 5
SITE_RATE = 100
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


async def _crash_run(tmp_path: Path, whole_node: bool) -> None:
    total = 3000
    sim = Simulator(SimConfig(domains=tuple(domain(d) for d in DOMAINS), seed=11))
    await sim.start()
    try:
        config = _config(tmp_path, sim, RULES)
        key = await cli_tenant(config)
        addresses = [f"user{i}@{DOMAINS[i % len(DOMAINS)]}" for i in range(total)]
        recorder = sim.recorder
        async with served(config, key, 40.0) as (node, api):
            sent: list[tuple[str, str]] = []
            for i in range(0, total, 500):
                sent += await _post(api, addresses[i : i + 500])
            await wait_for(lambda: len(recorder.records) >= 500, timeout=20, interval=0.005)
            if whole_node:
                await asyncio.to_thread(node.kill)
            else:
                victim = _workers(node)[0]
                os.kill(victim, signal.SIGKILL)
            # What the dead processes wrote before they died reaches the sim meanwhile.
            await asyncio.sleep(0.5)
            at_kill = len(recorder.records)
            before = {(r.message_id, r.recipient) for r in recorder.records}
            if not whole_node:
                # The supervisor starts the worker again; the node delivers everything.
                await wait_for(lambda: victim not in _workers(node) and len(_workers(node)) == 2)
                await _all_delivered(api, total, timeout=60)
                await asyncio.to_thread(node.terminate)
                assert node.proc is not None and node.proc.returncode == 0
        assert at_kill < total * 3 // 4, at_kill
        if whole_node:
            async with served(config, key, 40.0) as (node, api):
                await _all_delivered(api, total, timeout=60)
                await asyncio.to_thread(node.terminate)
        states, leased = await _leased_after_stop(config)
        assert states == {"delivered": total}
        assert leased == 0
        report = sim.report()
        dupes = report.duplicate_count
        in_flight = len(DOMAINS) * SITE_CONNECTIONS
        print(
            f"\nkill -9 of {'the node' if whole_node else 'one worker'} at {at_kill} of "
            f"{total} accepted: duplicates {dupes} (bound {in_flight + len(DOMAINS) * 25})"
        )
        assert report.accepted_pairs() == set(sent)
        assert {(d.message_id, d.recipient) for d in report.duplicates} <= before
        assert dupes <= in_flight + len(DOMAINS) * SITE_RATE // 4, dupes
        if not whole_node:
            log = config.with_name("node.log").read_text()
            assert "exited (killed by SIGKILL)" in log and "starting it again" in log
    finally:
        await sim.stop()


async def test_kill9_of_one_worker_loses_nothing(tmp_path: Path) -> None:
    await _crash_run(tmp_path, whole_node=False)


async def test_kill9_of_the_whole_node_loses_nothing(tmp_path: Path) -> None:
    await _crash_run(tmp_path, whole_node=True)


async def test_sigterm_drains_every_worker(tmp_path: Path) -> None:
    total = 2000
    sim = Simulator(SimConfig(domains=tuple(domain(d) for d in DOMAINS), seed=5))
    await sim.start()
    try:
        config = _config(tmp_path, sim, RULES)
        key = await cli_tenant(config)
        addresses = [f"user{i}@{DOMAINS[i % len(DOMAINS)]}" for i in range(total)]
        async with served(config, key, 40.0) as (node, api):
            sent = await _post(api, addresses[:1000]) + await _post(api, addresses[1000:])
            await wait_for(lambda: len(sim.recorder.records) >= 300, timeout=20, interval=0.005)
            t0 = time.monotonic()
            await asyncio.to_thread(node.terminate)
            stopped_in = time.monotonic() - t0
            assert node.proc is not None and node.proc.returncode == 0
        states, leased = await _leased_after_stop(config)
        print(f"\nSIGTERM: 2 workers stopped in {stopped_in:.2f}s; states then {states}")
        assert leased == 0
        assert sum(states.values()) == total
        assert stopped_in < 15
        async with served(config, key, 40.0) as (node, api):
            await _all_delivered(api, total, timeout=60)
            await asyncio.to_thread(node.terminate)
        report = sim.report()
        assert report.accepted_pairs() == set(sent)
        assert report.duplicate_count == 0
    finally:
        await sim.stop()


def _connections_of(pid: int, port: int) -> int:
    """Established TCP connections on local ``port`` held by process ``pid``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


async def test_connections_are_spread_over_the_workers(tmp_path: Path) -> None:
    sim = Simulator(SimConfig(domains=(domain("spread.test"),), seed=3))
    await sim.start()
    try:
        config = _config(tmp_path, sim, RULES)
        key = await cli_tenant(config)
        async with served(config, key) as (node, api):
            port = int(node.ready["api"].rsplit(":", 1)[1])

            async def spread() -> list[int]:
                """Connections held by each worker after 16 clients connected."""
                clients = [
                    httpx.AsyncClient(base_url=str(api.base_url), headers=api.headers, timeout=10)
                    for _ in range(16)
                ]
                try:
                    for c in clients:  # one keep-alive connection each
                        assert (await c.get("/healthz")).status_code == 200
                    return [_connections_of(pid, port) for pid in _workers(node)]
                finally:
                    for c in clients:
                        await c.aclose()

            held = await spread()
            print(f"\n16 connections held by the workers: {held}")
            assert sum(held) == 16
            assert min(held) >= 1  # all 16 on one worker: odds of 2 in 65,536
            workers = _workers(node)
            # A worker killed (the one whose API socket was bound first): the other takes
            # every new connection while it restarts.
            os.kill(workers[0], signal.SIGKILL)
            t0 = time.monotonic()
            answered = 0
            while time.monotonic() - t0 < 2.0:
                async with httpx.AsyncClient(base_url=str(api.base_url), timeout=5) as c:
                    assert (await c.get("/healthz")).status_code == 200
                    answered += 1
            await wait_for(lambda: len(_workers(node)) == 2 and _workers(node) != workers)
            print(f"{answered} new connections answered in the 2 s after a worker's kill -9")
            await asyncio.sleep(1.0)  # the new worker accepting
            held = await spread()
            print(f"16 connections after the restart: {held}")
            assert sum(held) == 16 and min(held) >= 1
    finally:
        await sim.stop()


async def test_smtp_connection_limits_hold_for_the_whole_node(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        node_toml(
            tmp_path / "data",
            "[delivery]\nenabled = false",
            top_extra="[node]\nworkers = 2",
            submission_extra="max_connections_per_ip = 3",
        )
    )
    key = await cli_tenant(config)
    async with served(config, key) as (node, _):
        host, port = node.ready["submission"].rsplit(":", 1)
        # Opened at once, so that both workers take some (they accept on one socket).
        opened = await asyncio.gather(
            *(asyncio.open_connection(host, int(port)) for _ in range(12))
        )
        conns = [writer for _, writer in opened]
        try:
            greetings = [await asyncio.wait_for(r.readline(), 10) for r, _ in opened]
            refused = [g for g in greetings if not g.startswith(b"220 ")]
            assert refused == [b"421 4.7.0 Too many connections from your address\r\n"] * 9
            held = [_connections_of(pid, int(port)) for pid in _workers(node)]
            print(f"\n12 connections from one address, limit 3: held by the workers {held}")
            assert sum(held) == 3
        finally:
            for writer in conns:
                writer.close()
