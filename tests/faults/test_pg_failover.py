"""PostgreSQL fails over under two nodes taking and delivering mail.

A primary and its streaming replica (``pg_basebackup -R``), synchronous
(``synchronous_standby_names = '*'``: a commit returns once the replica flushed it). Two
``postline serve`` nodes whose store URL names both hosts with
``target_session_attrs=read-write`` take a continuous stream of API requests and deliver to
a loopback sink. The primary is killed (``pg_ctl stop -m immediate``) and the replica
promoted (``pg_ctl promote``), as a failover manager would:

* both nodes reconnect to the new primary by themselves: ``/readyz`` is 200 again and new
  messages are accepted, and the new primary has their pool and LISTEN connections;
* every message answered 202 is delivered (nothing acknowledged is lost: it was committed
  on the replica too), and duplicates stay within what the nodes held at the kill
  (``[queue] max_leased`` each).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from postline.sim.sink import Sink
from support import pgserver
from support.node import ROOT, NodeProcess, wait_for
from support.outage import log_lines, message, node_config, tenant_key

pg_cluster = pgserver.pg_cluster

LEASE = 15.0  # [queue] lease_time, seconds
MAX_LEASED = 100  # [queue] max_leased of each node: its in-flight window
BEFORE = 4.0  # seconds of traffic before the kill
AFTER = 4.0  # seconds of traffic after both nodes serve again
SENDERS = 4  # concurrent API clients


def _imports_this_tree() -> str:
    """Where a ``postline serve`` process started like the nodes imports postline from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTLINE_")}
    out = subprocess.run(
        [sys.executable, "-c", "import postline; print(postline.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return out.stdout.strip()


async def _serving(api: httpx.AsyncClient, n: int) -> bool:
    """Ready, and a new message is accepted."""
    with contextlib.suppress(httpx.HTTPError):
        if (await api.get("/readyz")).status_code != 200:
            return False
        sent = await api.post("/v1/messages", json=message(f"probe{n}@probe.test"))
        return sent.status_code == 202
    return False


async def test_nodes_follow_a_failover_and_lose_nothing_acknowledged(
    tmp_path: Path, pg_cluster: tuple[pgserver.PgServer, pgserver.PgServer]
) -> None:
    assert _imports_this_tree() == str(ROOT / "src" / "postline" / "__init__.py")
    primary, replica = pg_cluster
    dsn = await primary.create_postline_database()
    await primary.make_synchronous()
    url = pgserver.multi_host_dsn([primary, replica], dsn.rsplit("/", 1)[1])
    key = await tenant_key(url)
    sink = Sink(delay=0.2)  # a little time on the wire: outcomes in flight at the kill
    _, sink_port = await sink.start()
    names = ["node-1", "node-2"]
    nodes = [
        NodeProcess(cfg, cfg.with_name("node.log"))
        for cfg in (
            node_config(
                tmp_path,
                name,
                url,
                sink_port,
                lease=LEASE,
                max_leased=MAX_LEASED,
            )
            for name in names
        )
    ]
    acked: set[str] = set()
    refused = 0
    counter = itertools.count()
    stop_traffic = asyncio.Event()
    try:
        for node in nodes:
            await asyncio.to_thread(node.start, 60.0)
        apis = [
            httpx.AsyncClient(
                base_url=f"http://{n.ready['api']}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            for n in nodes
        ]

        async def sender() -> None:
            nonlocal refused
            while not stop_traffic.is_set():
                n = next(counter)
                to = f"m{n}@d{n % 5}.test"
                try:
                    r = await apis[n % 2].post("/v1/messages", json=message(to))
                except httpx.HTTPError:
                    r = None
                if r is not None and r.status_code == 202:
                    acked.add(to)
                else:
                    refused += 1
                    await asyncio.sleep(0.05)

        traffic = [asyncio.create_task(sender()) for _ in range(SENDERS)]
        await asyncio.sleep(BEFORE)
        acked_before = len(acked)
        assert acked_before > 0

        await asyncio.to_thread(primary.halt)
        killed = time.monotonic()
        await asyncio.to_thread(replica.promote)
        promoted = time.monotonic() - killed
        back: list[float] = []
        for i, api in enumerate(apis):
            await wait_for(lambda a=api, i=i: _serving(a, i), 30, interval=0.1)
            back.append(time.monotonic() - killed)
        await asyncio.sleep(AFTER)
        stop_traffic.set()
        await asyncio.gather(*traffic)

        received = {r for _, r in sink.stats.pairs}
        # Recipients leased by a call whose reply the kill cut off come back one lease
        # time later.
        await wait_for(lambda: acked <= {r for _, r in sink.stats.pairs}, LEASE + 45, 0.2)
        received = {r for _, r in sink.stats.pairs}
        lost = acked - received
        duplicates = sink.stats.duplicates
        extra = {r for r in received if r.startswith("m")} - acked

        # The new primary has both nodes' pools and LISTEN connections.
        conn = await asyncpg.connect(replica.dsn())
        try:
            apps = {
                r[0]
                for r in await conn.fetch(
                    "SELECT application_name FROM pg_stat_activity WHERE datname = $1",
                    dsn.rsplit("/", 1)[1],
                )
            }
        finally:
            await conn.close()
        for api in apis:
            await api.aclose()
        for name in names:
            assert f"postline {name}" in apps, apps
            assert f"postline {name} listen" in apps, apps
        assert not lost, sorted(lost)[:20]
        assert duplicates <= MAX_LEASED * len(nodes), duplicates
        for node in nodes:
            await asyncio.to_thread(node.terminate)
            lines = log_lines(node.log_path)
            actions = [line.get("action") for line in lines]
            assert "store.unavailable" in actions and "store.available" in actions
            tracebacks = [line for line in lines if "exc" in line]
            assert not tracebacks, tracebacks[0]["exc"]
        print(
            f"promoted {promoted:.2f}s after the kill; nodes serving again after "
            f"{', '.join(f'{b:.2f}s' for b in back)}; {len(acked)} acknowledged "
            f"({acked_before} before the kill), {refused} refused during the failover, "
            f"lost 0, duplicates {duplicates}, {len(extra)} delivered without a 202"
        )
    finally:
        stop_traffic.set()
        for node in nodes:
            await asyncio.to_thread(node.kill)
        await sink.stop()
