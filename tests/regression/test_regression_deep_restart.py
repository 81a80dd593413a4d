"""A node restarted with a deep queue sends nothing twice, and a clean stop loses nothing.

With a queue of 200,000 recipients over 10,000 domains that all go through one relay, a
node once leased up to 200 recipients for *every* due domain at start — far more than the
relay's buffer could take — so the store's single writer queued thousands of leases, the
renewals and outcomes waited behind them, leases ran out while their recipients were on
the wire and other lease rounds took them again: recipients were sent twice (or, with
short leases, everything leased was handed back before it could be sent, over and over:
delivery stalled). A SIGTERM then cut the recorder off, so recipients already sent stayed
queued and went out again after the restart.

Scaled down from the measured case (2 M queued, 5 min leases) to 200 k queued, 10 s leases
and a slow writer (``[sqlite] max_batch = 1``: a commit, and an fsync, per write): the
node delivers to a recording sink, is stopped with SIGTERM mid-delivery,
restarted, and stopped again. The sink must never see a (Message-ID, recipient) twice,
every recipient it saw must be recorded as delivered, the stop must take less than
``[node] shutdown_timeout``, and nothing may stay leased after a clean stop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from pathlib import Path

import httpx

from postline.model.ids import new_id
from postline.sim.sink import Sink
from postline.store.base import NewMessage, NewRecipient
from postline.store.sqlite.backend import SQLiteStore
from support.node import NodeProcess, node_toml

QUEUED = 200_000
DOMAINS = 10_000
PER_MESSAGE = 10  # recipients per message, each in another domain
SHUTDOWN = 30.0  # the default [node] shutdown_timeout


def _config(tmp_path: Path, port: int) -> Path:
    extra = f"""
[delivery]
helo_hostname = "node.postline.test"
tls = "disabled"
[[delivery.routes]]
domain = "*"
host = "127.0.0.1"
port = {port}
[[throttle.rules]]
name = "relay"
connections = 20
[queue]
lease_time = "10s"
scan_interval = "1s"
[sqlite]
max_batch = 1
"""
    path = tmp_path / "node.toml"
    path.write_text(node_toml(tmp_path / "data", extra))
    return path


async def _fill(db: Path) -> None:
    store = SQLiteStore(db)
    await store.open()
    try:
        tenant = await store.create_tenant("bulk")
        now = time.time()
        batch: list[NewMessage] = []
        for m in range(QUEUED // PER_MESSAGE):
            mid = new_id()
            header = f"<{mid}@shop.test>"
            body = (
                f"From: shop@shop.test\r\nSubject: offer {m}\r\nMessage-ID: {header}\r\n\r\n"
                + "x" * 400
                + "\r\n"
            ).encode()
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
                    subject=f"offer {m}",
                )
            )
            if len(batch) == 2000:
                await store.enqueue(batch)
                batch = []
        if batch:
            await store.enqueue(batch)
    finally:
        await store.close()


def _store_state(db: Path) -> tuple[int, int]:
    """(recipients recorded delivered, queued recipients still leased)."""
    conn = sqlite3.connect(db)
    try:
        delivered = conn.execute(
            "SELECT count(*) FROM recipients WHERE state = 'delivered'"
        ).fetchone()[0]
        leased = conn.execute(
            "SELECT count(*) FROM recipients WHERE state = 'queued' AND lease_owner IS NOT NULL"
        ).fetchone()[0]
        return int(delivered), int(leased)
    finally:
        conn.close()


def _leased(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("postline_leased_recipients "):
            return float(line.split()[1])
    raise AssertionError("no postline_leased_recipients in /metrics")


async def _run_then_stop(config: Path, sink: Sink, until: int) -> float:
    """Start a node, let the sink reach ``until`` recipients, SIGTERM it; returns how long
    it took to exit. What the node holds leased stays bounded by the relay's buffer."""
    node = NodeProcess(config, config.with_name("node.log"))
    await asyncio.to_thread(node.start, 60.0)
    assert node.proc is not None
    try:
        deadline = time.monotonic() + 90
        async with httpx.AsyncClient(base_url=f"http://{node.ready['api']}") as api:
            while sink.stats.recipients < until:
                # At about 2,000 recipients/s this takes 15 s; a node whose leases expire
                # while their renewals wait behind leasing hands everything back, stalls.
                assert time.monotonic() < deadline, (
                    f"delivery stalled at {sink.stats.recipients} recipients"
                )
                assert node.proc.poll() is None, "the node died"
                leased = _leased((await api.get("/metrics")).text)
                # The relay buffers 20 connections x 50; a few transactions and outcome
                # batches besides; never the whole queue.
                assert leased <= 3000, f"{leased:.0f} recipients leased at once"
                await asyncio.sleep(0.2)
        t0 = time.monotonic()
        os.kill(node.proc.pid, signal.SIGTERM)
        while node.proc.poll() is None:
            assert time.monotonic() - t0 < SHUTDOWN + 30, "SIGTERM did not stop the node"
            await asyncio.sleep(0.05)
        return time.monotonic() - t0
    finally:
        await asyncio.to_thread(node.kill)


async def test_restart_with_a_deep_queue_sends_nothing_twice(tmp_path: Path) -> None:
    db = tmp_path / "data" / "postline.db"
    db.parent.mkdir(parents=True)
    await _fill(db)
    sink = Sink()
    _, port = await sink.start()
    try:
        config = _config(tmp_path, port)
        stopped_in = await _run_then_stop(config, sink, 30_000)
        delivered, leased = _store_state(db)
        seen = len(sink.stats.pairs)
        assert sink.stats.duplicates == 0, f"{sink.stats.duplicates} sent twice before the stop"
        assert delivered == seen, f"sink saw {seen}, store recorded {delivered} delivered"
        assert leased == 0, f"{leased} recipients left leased after a clean stop"
        assert stopped_in < SHUTDOWN, f"SIGTERM took {stopped_in:.1f}s"

        stopped_in = await _run_then_stop(config, sink, seen + 30_000)
        delivered, leased = _store_state(db)
        assert sink.stats.duplicates == 0, f"{sink.stats.duplicates} sent again after restart"
        assert delivered == len(sink.stats.pairs)
        assert leased == 0
        assert stopped_in < SHUTDOWN, f"SIGTERM took {stopped_in:.1f}s"
    finally:
        await sink.stop()
