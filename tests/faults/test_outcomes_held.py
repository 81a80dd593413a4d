"""Outcomes recorded while PostgreSQL is stopped are kept, written when it is back, and
their recipients are sent once.

Two ``postline serve`` nodes share one PostgreSQL server of the test's own and deliver to
a loopback sink that answers the end of DATA only after a delay, so that transactions are
on the wire when the server is stopped (``pg_ctl stop -m immediate``): their replies come
during the outage, and recording them fails. With a lease of a few seconds (renewed every
quarter of it), an outcome dropped or a renewal that came too late would let the other
node lease the recipient again and send it a second time.

* ``postline_outcomes_pending`` shows the outcomes held during the outage;
* after ``pg_ctl start`` every recipient is delivered, the sink received each exactly once,
  and the store has one ``delivered`` event per recipient;
* ``postline_store_errors_total{op="record"}`` counted the writes that failed and were
  retried.

On SIGTERM during an outage, a node waits (within ``[node] shutdown_timeout``) for the
store and writes the outcomes it holds; if the store stays away, it lists them in its log.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from postline.sim.sink import Sink
from support import pgserver
from support.node import NodeProcess, wait_for
from support.outage import (
    log_lines,
    message,
    metric,
    node_config,
    recipient_states,
    tenant_key,
)

# Over a minute each: `make faults` runs them, `make test` does not.
pytestmark = pytest.mark.long

own_pg_server = pgserver.own_pg_server

LEASE = 12.0  # [queue] lease_time of the nodes, seconds
OUTAGE = 5.0  # seconds the server stays stopped
REPLY_DELAY = 1.5  # seconds the sink waits before answering the end of DATA
MESSAGES = 60


async def _start(nodes: list[NodeProcess]) -> None:
    for node in nodes:
        await asyncio.to_thread(node.start, 60.0)


async def test_outcomes_recorded_during_an_outage_are_kept_and_sent_once(
    tmp_path: Path, own_pg_server: pgserver.PgServer
) -> None:
    server = own_pg_server
    dsn = await server.create_postline_database()
    key = await tenant_key(dsn)
    sink = Sink(delay=REPLY_DELAY)
    _, sink_port = await sink.start()
    nodes = [
        NodeProcess(cfg, cfg.with_name("node.log"))
        for cfg in (node_config(tmp_path, f"node-{i}", dsn, sink_port, lease=LEASE) for i in (1, 2))
    ]
    try:
        await _start(nodes)
        apis = [
            httpx.AsyncClient(
                base_url=f"http://{n.ready['api']}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            for n in nodes
        ]
        addresses = [f"r{i}-{uuid.uuid4().hex[:6]}@d{i % 4}.test" for i in range(MESSAGES)]
        for i, to in enumerate(addresses):
            r = await apis[i % 2].post("/v1/messages", json=message(to))
            assert r.status_code == 202, r.text
        # Transactions on the wire: the sink has mail whose 250 it has not sent yet.
        await wait_for(lambda: sink.stats.recipients >= 5, 20, interval=0.02)
        await asyncio.to_thread(server.halt)
        halted = time.monotonic()
        held = 0.0
        while time.monotonic() - halted < OUTAGE:
            for api in apis:
                text = (await api.get("/metrics")).text
                held = max(held, metric(text, "postline_outcomes_pending"))
            await asyncio.sleep(0.25)
        received_in_outage = sink.stats.recipients
        await asyncio.to_thread(server.resume)
        resumed = time.monotonic()

        await wait_for(lambda: len(sink.stats.pairs) >= MESSAGES, 60, interval=0.1)

        async def settled() -> bool:
            states, _ = await recipient_states(dsn)
            return len(states) == MESSAGES and set(states.values()) == {"delivered"}

        await wait_for(settled, 30, interval=0.2)
        # Past the lease time after the outage: a lease that ran out would have been
        # leased and sent again by now.
        await asyncio.sleep(max(0.0, LEASE + 2.0 - (time.monotonic() - resumed)))
        states, events = await recipient_states(dsn)
        record_errors = 0.0
        for api in apis:
            record_errors += metric(
                (await api.get("/metrics")).text, "postline_store_errors_total", op="record"
            )
            await api.aclose()

        received = {r for _, r in sink.stats.pairs}
        assert received == {a.lower() for a in addresses}
        assert sink.stats.duplicates == 0, [p for p, n in sink.stats.pairs.items() if n > 1]
        assert set(states.values()) == {"delivered"}
        assert all(events.get(a) == 1 for a in addresses), events
        assert held > 0, "no outcome was held during the outage"
        assert record_errors > 0, "no outcome write failed: the outage missed the deliveries"
        print(
            f"{received_in_outage} received by the sink by the end of the outage, "
            f"up to {held:.0f} outcomes held on one node, {record_errors:.0f} record "
            f"writes retried; {MESSAGES} delivered once each, 0 duplicates"
        )
    finally:
        for node in nodes:
            await asyncio.to_thread(node.kill)
        await sink.stop()


async def test_sigterm_during_an_outage_waits_for_the_store_or_lists_what_it_could_not_write(
    tmp_path: Path, own_pg_server: pgserver.PgServer
) -> None:
    """Node 1 is stopped while the store is away and comes back within its shutdown
    timeout: it writes its outcomes and exits. Node 2 is stopped in a second outage that
    outlasts its timeout: it logs every outcome it could not write, by message id."""
    server = own_pg_server
    dsn = await server.create_postline_database()
    key = await tenant_key(dsn)
    sink = Sink(delay=REPLY_DELAY)
    _, sink_port = await sink.start()
    nodes = [
        NodeProcess(cfg, cfg.with_name("node.log"))
        for cfg in (node_config(tmp_path, f"node-{i}", dsn, sink_port, lease=LEASE) for i in (1, 2))
    ]
    try:
        received: dict[str, set[str]] = {}  # what the sink got while each node ran
        states: dict[str, str] = {}
        for node, batch in zip(nodes, ("a", "b"), strict=True):
            # One node at a time, each with mail of its own (node 2 may also deliver
            # what node 1 could not lease before it stopped).
            seen = set(sink.stats.pairs)
            await _start([node])
            async with httpx.AsyncClient(
                base_url=f"http://{node.ready['api']}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            ) as api:
                before = sink.stats.recipients
                for i in range(10):
                    r = await api.post("/v1/messages", json=message(f"{batch}{i}@d.test"))
                    assert r.status_code == 202, r.text
                await wait_for(lambda b=before: sink.stats.recipients >= b + 3, 20, interval=0.02)
            await asyncio.to_thread(server.halt)
            await asyncio.sleep(REPLY_DELAY + 0.5)  # the replies come; nothing is written
            assert node.proc is not None
            node.proc.terminate()
            if batch == "a":
                await asyncio.sleep(2.0)
                await asyncio.to_thread(server.resume)
                code = await asyncio.to_thread(node.proc.wait, 30)
            else:
                code = await asyncio.to_thread(node.proc.wait, 30)
                await asyncio.to_thread(server.resume)
            node.kill()  # closes the log
            assert code == 0
            received[batch] = {r for m, r in set(sink.stats.pairs) - seen}
            states, _ = await recipient_states(dsn)
            if batch == "a":
                # The store came back within the shutdown timeout: every outcome of
                # node 1 was written before it exited.
                assert received["a"], "node 1 delivered nothing"
                missing = {r for r in received["a"] if states.get(r) != "delivered"}
                assert not missing, (missing, states)
        lines_a = log_lines(nodes[0].log_path)
        lines_b = log_lines(nodes[1].log_path)
        stopped_a = [x for x in lines_a if x.get("action") == "node.stopped"]
        assert stopped_a and "not written" not in stopped_a[-1]["msg"], stopped_a
        assert not [x for x in lines_a if x.get("action") == "deliver.unwritten"]

        summary = [x for x in lines_b if x.get("action") == "deliver.stop_unrecorded"]
        listed = [x for x in lines_b if x.get("action") == "deliver.unwritten"]
        assert len(summary) == 1 and listed, lines_b[-5:]
        assert summary[0]["unwritten"] == len(listed)
        # Every recipient the sink got from node 2 whose outcome is not in the store is
        # listed (by message id and index), and nothing else is.
        unrecorded = {r for r in received["b"] if states.get(r) != "delivered"}
        assert unrecorded, "node 2 wrote every outcome: the outage did not catch it"
        listed_delivered = [x for x in listed if x["outcome"] == "delivered"]
        assert len(listed_delivered) == len(unrecorded), (listed, unrecorded)
        conn = await asyncpg.connect(dsn)
        try:
            for x in listed_delivered:
                address = await conn.fetchval(
                    "SELECT address FROM recipients WHERE message_id = $1 AND idx = $2",
                    x["message_id"],
                    x["idx"],
                )
                assert address in unrecorded
        finally:
            await conn.close()
        print(
            f"node 1: {len(received['a'])} outcomes written after the store came back during "
            f"its stop; node 2: {len(listed)} outcomes listed as not written "
            f"({len(listed_delivered)} delivered)"
        )
    finally:
        for node in nodes:
            await asyncio.to_thread(node.kill)
        await sink.stop()
