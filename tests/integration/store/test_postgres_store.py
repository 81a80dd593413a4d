"""PostgreSQL-specific behaviour of the store: several nodes on one database, partitioning,
LISTEN/NOTIFY, error translation and the counters folded from deltas."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from postline.errors import IntegrityViolation, StoreUnavailable
from postline.model import EventType, RecipientState
from postline.model.ids import new_id
from postline.store.base import (
    AttemptRecord,
    EventQuery,
    IdempotencyClaim,
    LeaseRequest,
    NewMessage,
    NewRecipient,
)
from postline.store.postgres.backend import PostgresStore

NOW = time.time()


def message(tenant_id: str, *addresses: str, due: float | None = None) -> NewMessage:
    return NewMessage(
        id=new_id(),
        tenant_id=tenant_id,
        mail_from="sender@example.org",
        body=b"Subject: hi\r\n\r\nhello\r\n",
        recipients=[
            NewRecipient(i, a, a.rpartition("@")[2].lower()) for i, a in enumerate(addresses)
        ],
        created_at=NOW,
        next_attempt_at=NOW if due is None else due,
        expires_at=NOW + 86400,
    )


@contextlib.asynccontextmanager
async def nodes(dsn: str, count: int) -> AsyncIterator[list[PostgresStore]]:
    """``count`` stores on one database, as several postline nodes would have."""
    stores = [PostgresStore(dsn, node_id=f"n{i}", min_size=1, max_size=5) for i in range(count)]
    for s in stores:
        await s.open()
    try:
        yield stores
    finally:
        for s in stores:
            await s.close()


async def test_idempotency_keys_hold_across_nodes(pg_dsn: str) -> None:
    async with nodes(pg_dsn, 3) as stores:
        tid = (await stores[0].create_tenant("acme")).id
        results = await asyncio.gather(
            *(
                stores[i % 3].enqueue(
                    [message(tid, "a@one.test")],
                    idempotency=IdempotencyClaim("k", f"h{i}", 202, str(i), NOW),
                    tenant_id=tid,
                )
                for i in range(30)
            )
        )
        assert sum(r is None for r in results) == 1
        assert await stores[1].state_counts() == {"queued": 1}
        winner = await stores[2].get_idempotency(tid, "k")
        assert winner is not None and all(r in (None, winner) for r in results)


async def test_nodes_leasing_one_domain_get_disjoint_rows(pg_dsn: str) -> None:
    async with nodes(pg_dsn, 3) as stores:
        tid = (await stores[0].create_tenant("acme")).id
        await stores[0].enqueue([message(tid, f"u{i}@busy.test") for i in range(300)])

        async def drain(store: PostgresStore) -> list[str]:
            got: list[str] = []
            while True:
                leased = await store.lease(
                    "busy.test", now=NOW, limit=7, lease_time=60, owner=store.node_id
                )
                if not leased:
                    return got
                got += [r.address for m in leased for r in m.recipients]

        per_node = await asyncio.gather(*(drain(s) for s in stores for _ in range(3)))
        everything = [a for got in per_node for a in got]
        assert len(everything) == 300
        assert len(set(everything)) == 300
        # The rows are leased by their owner until the lease expires.
        view_owner = await stores[0]._call(
            lambda c: c.fetch("SELECT DISTINCT lease_owner FROM recipients")
        )
        assert {r[0] for r in view_owner} <= {"n0", "n1", "n2"}


async def test_a_dead_nodes_lease_returns_to_the_queue(pg_dsn: str) -> None:
    async with nodes(pg_dsn, 2) as (a, b):
        tid = (await a.create_tenant("acme")).id
        await a.enqueue([message(tid, "x@one.test", "y@one.test")])
        [leased] = await a.lease("one.test", now=NOW, limit=10, lease_time=30, owner="n0")
        await a.close()  # n0 dies holding the lease
        assert await b.lease("one.test", now=NOW + 29, limit=10, lease_time=30, owner="n1") == []
        [again] = await b.lease("one.test", now=NOW + 31, limit=10, lease_time=30, owner="n1")
        assert [r.address for r in again.recipients] == ["x@one.test", "y@one.test"]
        await b.record(
            [
                AttemptRecord(
                    again.id,
                    r.idx,
                    tid,
                    r.address,
                    RecipientState.DELIVERED,
                    EventType.DELIVERED,
                    NOW + 32,
                    code=250,
                )
                for r in again.recipients
            ],
            node_id="n1",
        )
        assert await b.state_counts() == {"delivered": 2}
        assert leased.id == again.id


async def test_recipients_are_hash_partitioned_by_domain(pg_dsn: str) -> None:
    async with nodes(pg_dsn, 1) as (store,):
        tid = (await store.create_tenant("acme")).id
        domains = [f"d{i}.test" for i in range(64)]
        await store.enqueue([message(tid, f"a@{d}", f"b@{d}") for d in domains])
        rows = await store._call(
            lambda c: c.fetch(
                "SELECT domain, array_agg(DISTINCT tableoid::regclass::text) AS parts"
                " FROM recipients GROUP BY domain"
            )
        )
        assert len(rows) == 64
        assert all(len(r["parts"]) == 1 for r in rows)  # a domain lives in one partition
        used = {r["parts"][0] for r in rows}
        assert len(used) > 8 and all(p.startswith("recipients_p") for p in used)
        # A lease of one domain reads only that domain's partition.
        plan = await store._call(
            lambda c: c.fetch(
                "EXPLAIN (COSTS OFF) SELECT * FROM recipients"
                " WHERE domain = 'd7.test' AND state = 'queued' AND next_attempt_at <= 0"
            )
        )
        scanned = {w for r in plan for w in re.findall(r"\brecipients_p\d\d\b", r[0])}
        assert len(scanned) == 1


async def test_a_batch_of_1000_messages_is_one_durable_transaction(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        db = pg_dsn.rsplit("/", 1)[1]
        await conn.execute(f'ALTER DATABASE "{db}" SET synchronous_commit = off')
    finally:
        await conn.close()
    async with nodes(pg_dsn, 1) as (store,):
        setting = await store._call(lambda c: c.fetchval("SHOW synchronous_commit"))
        assert setting == "on"  # the store insists on durable commits
        tid = (await store.create_tenant("acme")).id
        batch = [message(tid, f"u{i}@d{i % 10}.test") for i in range(1000)]
        batch.append(batch[0])  # a duplicate id sinks the whole batch
        with pytest.raises(IntegrityViolation):
            await store.enqueue(batch)
        assert await store.state_counts() == {}
        await store.enqueue(batch[:-1])
        assert await store.state_counts() == {"queued": 1000}
        assert len(await store.due_queues(owner="n0")) == 10


async def test_unreachable_server_is_store_unavailable(pg_dsn: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/x")
    with pytest.raises(StoreUnavailable):
        await store.open()
    with pytest.raises(StoreUnavailable):
        await store.due_queues(owner="n0")


async def test_a_killed_connection_is_store_unavailable_then_recovers(pg_dsn: str) -> None:
    async with nodes(pg_dsn, 1) as (store,):
        other = await asyncpg.connect(pg_dsn)
        try:
            tx = other.transaction()
            await tx.start()
            await other.execute("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
            blocked = asyncio.create_task(store.create_tenant("acme"))
            for _ in range(100):
                pid = await other.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND application_name = 'postline n0'"
                )
                if pid:
                    break
                await asyncio.sleep(0.02)
            assert pid
            await other.execute("SELECT pg_terminate_backend($1)", pid)
            with pytest.raises(StoreUnavailable):
                await blocked
            await tx.rollback()
        finally:
            await other.close()
        assert (await store.create_tenant("acme")).name == "acme"


async def test_listen_due_wakes_other_nodes(pg_dsn: str) -> None:
    async with nodes(pg_dsn, 2) as (a, b):
        tid = (await a.create_tenant("acme")).id
        woken: asyncio.Queue[frozenset[tuple[str, str]]] = asyncio.Queue()
        own: list[frozenset[tuple[str, str]]] = []
        await b.listen_due(woken.put_nowait)
        await a.listen_due(own.append)
        await a.enqueue(
            [message(tid, "x@now.test", "y@now.test"), message(tid, "z@later.test", due=0)]
        )
        want = {(tid, "now.test"), (tid, "later.test")}
        got = await asyncio.wait_for(woken.get(), 5)
        while got != want and len(got) < 2:
            got |= await asyncio.wait_for(woken.get(), 5)
        assert got == want

        # Mail scheduled for later wakes the listener when it becomes due.
        started = time.monotonic()
        await a.enqueue([message(tid, "s@sched.test", due=time.time() + 0.6)])
        assert await asyncio.wait_for(woken.get(), 5) == {(tid, "sched.test")}
        assert time.monotonic() - started >= 0.5
        # Mail handed over already leased is the enqueuing node's business only.
        m = message(tid, "h@handed.test")
        await a.enqueue([m], node_id="n0", leased={m.id: [0]}, lease_until=time.time() + 60)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(woken.get(), 0.3)
        assert own == []  # a store does not wake itself


async def test_listen_due_survives_a_lost_connection(pg_dsn: str) -> None:
    async with nodes(pg_dsn, 2) as (a, b):
        tid = (await a.create_tenant("acme")).id
        woken: asyncio.Queue[frozenset[tuple[str, str]]] = asyncio.Queue()
        await b.listen_due(woken.put_nowait)
        killed = await a._call(
            lambda c: c.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'postline n1 listen'"
            )
        )
        assert killed == 1
        assert await asyncio.wait_for(woken.get(), 5) == frozenset()  # rescan: we were away
        await a.enqueue([message(tid, "x@back.test")])
        assert await asyncio.wait_for(woken.get(), 5) == {(tid, "back.test")}


async def test_resuming_a_pause_wakes_other_nodes(pg_dsn: str) -> None:
    async with nodes(pg_dsn, 2) as (a, b):
        woken: asyncio.Queue[frozenset[tuple[str, str]]] = asyncio.Queue()
        await b.listen_due(woken.put_nowait)
        await a.set_paused("t1", "held.test", True, now=NOW)
        await a.set_paused("t1", "held.test", False, now=NOW)
        assert await asyncio.wait_for(woken.get(), 5) == {("t1", "held.test")}
        # A domain resumed for every tenant: every node rescans its queues.
        await a.set_paused("*", "held.test", True, now=NOW)
        await a.set_paused("*", "held.test", False, now=NOW)
        assert await asyncio.wait_for(woken.get(), 5) == frozenset()


async def test_counts_add_up_across_nodes_before_and_after_folding(pg_dsn: str) -> None:
    async with nodes(pg_dsn, 2) as (a, b):
        tid = (await a.create_tenant("acme")).id
        msgs = [message(tid, f"u{i}@d{i % 3}.test") for i in range(30)]
        await asyncio.gather(a.enqueue(msgs[:15]), b.enqueue(msgs[15:]))
        pending = await a._call(lambda c: c.fetchval("SELECT count(*) FROM queue_count_deltas"))
        assert pending > 0  # not folded yet: reads add the deltas
        assert (await b.queue_depths()).total == 30
        leased = await a.lease_many(
            [LeaseRequest(tid, "d0.test", 100)], now=time.time(), lease_time=30, owner="n0"
        )
        recs = [
            AttemptRecord(m.id, r.idx, tid, r.address, RecipientState.DELIVERED,
                          EventType.DELIVERED, NOW, code=250)
            for m in leased[0].messages for r in m.recipients
        ]  # fmt: skip
        await b.record(recs)
        assert await a.state_counts() == {"queued": 20, "delivered": 10}
        assert await asyncio.gather(a.fold_counts(), b.fold_counts())
        assert await a._call(lambda c: c.fetchval("SELECT count(*) FROM queue_count_deltas")) == 0
        assert await b.state_counts() == {"queued": 20, "delivered": 10}
        depths = await a.queue_depths()
        assert depths.total == 20 and sorted(depths.top) == [("d1.test", 10), ("d2.test", 10)]
        assert [(s.domain, s.depth) for s in await b.queue_stats(tid)] == [
            ("d1.test", 10),
            ("d2.test", 10),
        ]
        assert await a.drop_empty_queues() == 1  # d0.test


async def test_concurrent_enqueues_share_statements_and_a_bad_one_fails_alone(
    pg_dsn: str,
) -> None:
    async with nodes(pg_dsn, 1) as (store,):
        tid = (await store.create_tenant("acme")).id
        first = message(tid, "a@one.test")
        await store.enqueue([first])
        before = store.stats
        calls = [store.enqueue([message(tid, f"u{i}@d{i % 5}.test")]) for i in range(200)]
        calls.insert(100, store.enqueue([first]))  # the same message id again
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        assert len(failed) == 1 and isinstance(failed[0], IntegrityViolation)
        assert isinstance(results[100], IntegrityViolation)
        assert await store.state_counts() == {"queued": 201}
        batches = store.stats["batches"] - before["batches"]
        assert batches < 100  # group commit: many calls per statement


async def test_same_key_twice_in_one_burst_stores_once(pg_dsn: str) -> None:
    async with nodes(pg_dsn, 1) as (store,):
        tid = (await store.create_tenant("acme")).id
        calls = []
        for i in range(50):
            key = f"k{i % 5}"
            calls.append(
                store.enqueue(
                    [message(tid, f"u{i}@one.test")],
                    idempotency=IdempotencyClaim(key, f"h{i}", 202, str(i), NOW),
                    tenant_id=tid,
                )
            )
        results = await asyncio.gather(*calls)
        assert sum(r is None for r in results) == 5
        assert await store.state_counts() == {"queued": 5}
        for i, r in enumerate(results):
            stored = await store.get_idempotency(tid, f"k{i % 5}")
            assert r is None or r == stored


async def test_one_writer_never_strands_a_request(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, min_size=1, max_size=2)  # a single group-commit writer
    await store.open()
    try:
        tid = (await store.create_tenant("acme")).id
        for burst in range(30):
            await asyncio.wait_for(
                asyncio.gather(
                    *(store.enqueue([message(tid, f"u{burst}_{i}@one.test")]) for i in range(7))
                ),
                10,
            )
            await asyncio.sleep(0)
        assert await store.state_counts() == {"queued": 210}
    finally:
        await store.close()


async def test_event_cursor_never_skips_an_event_committed_late(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, node_id="n0", event_gap_grace=0.5)
    await store.open()
    try:
        tid = (await store.create_tenant("acme")).id
        await store.enqueue([message(tid, "a@one.test")])
        [first] = await store.events(EventQuery(tenant_id=tid))
        # Another writer takes the next id and commits only later.
        late = await asyncpg.connect(pg_dsn)
        try:
            tx = late.transaction()
            await tx.start()
            await late.execute(
                "INSERT INTO events (at, tenant_id, type, data) VALUES (0, $1, 'accepted', '{}')",
                tid,
            )
            await store.enqueue([message(tid, "b@one.test")])  # a higher id, committed first
            assert await store.events(EventQuery(tenant_id=tid, after=first.id)) == []
            await tx.commit()
        finally:
            await late.close()
        page = await store.events(EventQuery(tenant_id=tid, after=first.id))
        assert [e.id for e in page] == [first.id + 1, first.id + 2]

        # A hole left by a rolled-back writer is stepped over once the grace has passed.
        aborted = await asyncpg.connect(pg_dsn)
        try:
            tx = aborted.transaction()
            await tx.start()
            await aborted.execute(
                "INSERT INTO events (at, tenant_id, type, data) VALUES (0, $1, 'accepted', '{}')",
                tid,
            )
            await tx.rollback()
        finally:
            await aborted.close()
        await store.enqueue([message(tid, "c@one.test")])
        after = page[-1].id
        assert await store.events(EventQuery(tenant_id=tid, after=after)) == []
        await asyncio.sleep(0.6)
        [c] = await store.events(EventQuery(tenant_id=tid, after=after))
        assert c.recipient == "c@one.test" and c.id == after + 2
    finally:
        await store.close()
