"""A rolling restart of every node of a fleet sends nothing twice.

Two ``postline serve`` nodes share one PostgreSQL holding 60,000 queued recipients over
2,000 domains, all relayed to one recording sink. While they deliver, each node in turn
is stopped with SIGTERM and started again. A clean stop writes every outcome and hands
every unsent lease back, so the sink never sees a (Message-ID, recipient) twice, every
recipient it saw is recorded delivered, and after the last stop nothing is left leased.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import asyncpg

from postline.model.ids import new_id
from postline.sim.sink import Sink
from postline.store.base import NewMessage, NewRecipient
from postline.store.postgres.backend import PostgresStore
from support import pgserver
from support.node import NodeProcess, free_port, node_toml

pg_server = pgserver.pg_server
pg_dsn = pgserver.pg_dsn

QUEUED = 60_000
DOMAINS = 2_000
PER_MESSAGE = 20


def _config(tmp: Path, name: str, dsn: str, port: int) -> Path:
    extra = f"""
[delivery]
helo_hostname = "{name}.postline.test"
tls = "disabled"
[[delivery.routes]]
domain = "*"
host = "127.0.0.1"
port = {port}
[[throttle.rules]]
name = "relay"
connections = 10
[queue]
lease_time = "30s"
scan_interval = "500ms"
"""
    path = tmp / name / "node.toml"
    path.parent.mkdir(parents=True)
    text = node_toml(
        path.parent / "data", extra, api=f"127.0.0.1:{free_port()}", top_extra=f'store = "{dsn}"'
    ).replace('node_id = "test-node"', f'node_id = "{name}"')
    path.write_text(text.replace("[submission]\n", "[submission]\nenabled = false\n"))
    return path


async def _fill(dsn: str) -> None:
    store = PostgresStore(dsn)
    await store.open()
    try:
        tenant = await store.create_tenant("bulk")
        now = time.time()
        batch: list[NewMessage] = []
        for m in range(QUEUED // PER_MESSAGE):
            mid = new_id()
            header = f"<{mid}@shop.test>"
            body = f"Subject: offer\r\nMessage-ID: {header}\r\n\r\nhello\r\n".encode()
            rcpts = []
            for i in range(PER_MESSAGE):
                d = (m * PER_MESSAGE + i) % DOMAINS
                rcpts.append(NewRecipient(i, f"u{m}@d{d:05d}.test", f"d{d:05d}.test"))
            batch.append(
                NewMessage(
                    id=mid,
                    tenant_id=tenant.id,
                    mail_from="shop@shop.test",
                    body=body,
                    recipients=rcpts,
                    created_at=now,
                    next_attempt_at=now,
                    expires_at=now + 86400,
                    message_id_header=header,
                )
            )
            if len(batch) == 500:
                await store.enqueue(batch)
                batch = []
        if batch:
            await store.enqueue(batch)
    finally:
        await store.close()


async def _state(dsn: str) -> tuple[int, int]:
    """(recipients recorded delivered, queued recipients still leased)."""
    conn = await asyncpg.connect(dsn)
    try:
        delivered = await conn.fetchval("SELECT count(*) FROM recipients WHERE state = 'delivered'")
        leased = await conn.fetchval(
            "SELECT count(*) FROM recipients WHERE state = 'queued' AND lease_owner IS NOT NULL"
        )
        return int(delivered), int(leased)
    finally:
        await conn.close()


async def _until(sink: Sink, n: int, nodes: list[NodeProcess]) -> None:
    deadline = time.monotonic() + 90
    while sink.stats.recipients < n:
        assert time.monotonic() < deadline, f"delivery stalled at {sink.stats.recipients}"
        for node in nodes:
            assert node.proc is not None and node.proc.poll() is None, "a node died"
        await asyncio.sleep(0.1)


async def _stop(node: NodeProcess) -> float:
    assert node.proc is not None
    t0 = time.monotonic()
    os.kill(node.proc.pid, signal.SIGTERM)
    while node.proc.poll() is None:
        assert time.monotonic() - t0 < 60, "SIGTERM did not stop the node"
        await asyncio.sleep(0.05)
    await asyncio.to_thread(node.kill)  # closes its pipes
    return time.monotonic() - t0


async def test_rolling_restart_of_every_node_sends_nothing_twice(
    tmp_path: Path, pg_dsn: str
) -> None:
    await _fill(pg_dsn)
    sink = Sink()
    _, port = await sink.start()
    configs = [_config(tmp_path, f"node-{i + 1}", pg_dsn, port) for i in range(2)]
    nodes = [NodeProcess(c, c.with_name("node.log")) for c in configs]
    try:
        for node in nodes:
            await asyncio.to_thread(node.start, 60.0)
        await _until(sink, 8_000, nodes)
        for i, config in enumerate(configs):
            stopped_in = await _stop(nodes[i])
            assert stopped_in < 30, f"node-{i + 1} took {stopped_in:.1f}s to stop"
            assert sink.stats.duplicates == 0
            nodes[i] = NodeProcess(config, config.with_name("node.log"))
            await asyncio.to_thread(nodes[i].start, 60.0)
            await _until(sink, sink.stats.recipients + 8_000, nodes)
        for node in nodes:
            await _stop(node)
        delivered, leased = await _state(pg_dsn)
        assert sink.stats.duplicates == 0, f"{sink.stats.duplicates} recipients sent twice"
        assert delivered == len(sink.stats.pairs)
        assert leased == 0, f"{leased} recipients left leased by stopped nodes"
    finally:
        for node in nodes:
            await asyncio.to_thread(node.kill)
        await sink.stop()
