"""The engine's lanes and leasing rounds, with a fake SMTP session and DNS: no sockets.

A real engine on a temporary SQLite store (its lease calls recorded) with a real
:class:`MemoryThrottleBackend`; only the SMTP session (through the engine's ``connect``)
and the DNS answers (a :class:`Resolver` that answers from a table) are stand-ins. Due
queues enter the lanes of their routes, rounds of admission split a lane's room over its
queues round-robin, and ``[queue] max_leased`` bounds what the node holds. A configuration
without ``[[delivery.sources]]`` goes through the same lanes as one with sources.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from postline.config import load_config
from postline.deliver.egress import Source
from postline.deliver.engine import DeliveryEngine
from postline.deliver.paths import SourceLane
from postline.deliver.port import Connection
from postline.deliver.work import Host
from postline.dns.resolver import MXHost, MXResult, Resolver
from postline.metrics import Metrics
from postline.model import RecipientState, Reply
from postline.smtp.client import TransactionResult
from postline.store.base import LeaseRequest, NewMessage, NewRecipient, QueueKey, QueueLease
from postline.store.sqlite.backend import SQLiteStore
from postline.throttle.memory import MemoryThrottleBackend
from postline.throttle.rules import ThrottleRules

OK = Reply(250, "ok", "2.0.0", "DATA")

# Every domain's MX: a.test and b.test are hosted together, c.test apart; gone.test does
# not exist.
MX = {
    "a.test": ("mx1.shared.test", "192.0.2.1"),
    "b.test": ("mx1.shared.test", "192.0.2.1"),
    "c.test": ("mx.c.test", "192.0.2.3"),
}


class TableResolver(Resolver):
    """DNS answers from :data:`MX`; any other domain does not exist."""

    async def mx(self, domain: str) -> MXResult:
        await asyncio.sleep(0)
        if domain not in MX:
            return MXResult(domain, "nxdomain", detail=f"{domain} does not exist")
        name, address = MX[domain]
        return MXResult(domain, "ok", (MXHost(10, name, (address,)),))

    async def addresses(self, host: str) -> tuple[str, ...]:
        return ()


class RecordingStore(SQLiteStore):
    """The SQLite store, with the requests of every lease call kept in order."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.lease_calls: list[list[tuple[QueueKey, int]]] = []

    async def lease_many(self, requests: Sequence[LeaseRequest], **kwargs: Any) -> list[QueueLease]:
        self.lease_calls.append([((r.tenant_id, r.domain), r.limit) for r in requests])
        return await super().lease_many(requests, **kwargs)


class Session:
    """An SMTP session that takes one permit of ``gate`` per transaction and accepts."""

    def __init__(self, gate: asyncio.Semaphore, sent: list[list[str]]) -> None:
        self.gate = gate
        self.sent = sent
        self.usable = True
        self.local_address = ("10.0.0.1", 40000)

    async def send(
        self, mail_from: str, recipients: Sequence[str], data: bytes
    ) -> TransactionResult:
        await self.gate.acquire()
        self.sent.append(list(recipients))
        return TransactionResult(Reply(250, "ok"), tuple(OK for _ in recipients), OK)

    async def quit(self) -> None:
        self.usable = False

    def abort(self) -> None:
        self.usable = False


class Node:
    def __init__(self, engine: DeliveryEngine, store: RecordingStore) -> None:
        self.engine = engine
        self.store = store
        self.gate = asyncio.Semaphore(0)
        self.sent: list[list[str]] = []

    def let_through(self, n: int) -> None:
        """Let ``n`` more transactions finish."""
        for _ in range(n):
            self.gate.release()

    async def connect(self, host: Host, source: Source) -> Connection:
        return Session(self.gate, self.sent)

    async def enqueue(self, tenant: str, domain: str, n: int) -> QueueKey:
        """``n`` messages of one recipient each to ``domain``."""
        now = time.time()
        messages = [
            NewMessage(
                id=f"{tenant}-{domain}-{i}",
                tenant_id=tenant,
                mail_from="s@y.test",
                body=b"Subject: hi\r\n\r\nhello\r\n",
                recipients=[NewRecipient(0, f"u{i}@{domain}", domain)],
                created_at=now,
                next_attempt_at=now,
                expires_at=now + 86400,
            )
            for i in range(n)
        ]
        await self.store.enqueue(messages)
        return (tenant, domain)


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Build (and at the end stop) engines: ``await make(config_text, rules, ...)``."""
    made: list[tuple[DeliveryEngine, RecordingStore]] = []

    async def build(
        text: str = "",
        rules: Sequence[dict[str, Any]] = (),
        *,
        queue: str = "",
        start: bool = True,
    ) -> Node:
        config = load_config(text=f'[queue]\nscan_interval = "1h"\n{queue}\n{text}', environ={})
        store = RecordingStore(tmp_path / f"postline-{len(made)}.db")
        await store.open()
        holder: list[Node] = []

        async def connect(host: Host, source: Source) -> Connection:
            return await holder[0].connect(host, source)

        engine = DeliveryEngine(
            config=config,
            store=store,
            resolver=TableResolver(),
            rules=ThrottleRules.load(list(rules)),
            throttle=MemoryThrottleBackend(),
            metrics=Metrics(),
            node_id="node-1",
            connect=connect,
        )
        holder.append(Node(engine, store))
        made.append((engine, store))
        if start:
            await engine.start()
        return holder[0]

    yield build
    for engine, store in made:
        await engine.stop(timeout=2.0)
        await store.close()


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def _tenants(node: Node, n: int) -> list[str]:
    return [(await node.store.create_tenant(f"t{i}")).id for i in range(n)]


SOURCES = """
[[delivery.sources]]
name = "ip-a"
address = "127.0.0.2"
[[delivery.sources]]
name = "ip-b"
address = "127.0.0.3"
"""


@pytest.mark.parametrize("sources", ["", SOURCES], ids=["implicit", "sources"])
async def test_due_queues_enter_the_lane_of_their_destination(
    make: Callable[..., Any], sources: str
) -> None:
    node: Node = await make(sources, start=False)  # no rounds: the queues stay in rings
    engine = node.engine
    t1, t2 = await _tenants(node, 2)
    keys = [(t1, "a.test"), (t2, "a.test"), (t1, "b.test"), (t1, "c.test"), (t1, "gone.test")]
    engine.notify(keys)
    await _until(lambda: all(k in engine.admission for k in keys))
    lanes = [engine.admission.lane_of(k) for k in keys]
    shared, _, _, apart, failed = lanes
    # Domains with the same MX site share a lane; one lane type for every route.
    assert lanes[0] is lanes[1] is lanes[2] is shared
    assert isinstance(shared, SourceLane) and isinstance(apart, SourceLane)
    assert shared is not apart
    assert shared.lane_key.endswith("|mx1.shared.test")
    assert failed is engine.no_route
    # The lane's room is its sources' sites' room: one site per source, each empty.
    sources_of = {s.name for s in engine.egress.used}
    assert sources_of == ({"ip-a", "ip-b"} if sources else {"default"})
    room = shared.room()
    assert set(shared.target.sites) == sources_of
    site = shared.target.sites[sorted(sources_of)[0]]
    assert room == len(sources_of) * site.max_buffer()
    if not sources:
        # The implicit source's bucket is the destination's own (no source name): the
        # counters every node of a fleet shares.
        assert site.bucket == shared.target.base.key and "@" not in site.bucket
        view = await engine.throttle_state("a.test")
        assert view is not None and view["key"] == site.bucket and "sources" not in view
    else:
        assert {s.bucket.split(":")[0] for s in shared.target.sites.values()} == {
            "default@ip-a",
            "default@ip-b",
        }
        view = await engine.throttle_state(shared.target.domain)
        assert view is not None and set(view["sources"]) == {"ip-a", "ip-b"}


async def test_a_round_splits_the_lanes_room_over_its_queues_in_turn(
    make: Callable[..., Any],
) -> None:
    # One connection to the shared MX site: its buffer holds 50.
    node: Node = await make(rules=[{"name": "one", "domains": ["*.test"], "connections": 1}])
    engine = node.engine
    tenants = await _tenants(node, 5)
    keys = [await node.enqueue(t, "a.test", 40) for t in tenants]
    engine.notify(keys)
    await _until(lambda: len(node.store.lease_calls) == 1)
    await asyncio.sleep(0.2)
    # The lane's 50 went to its five queues, 10 each, in one call; no more room.
    (first,) = node.store.lease_calls
    ring = [k for k, _ in first]  # the order the queues joined the lane's ring
    assert sorted(ring) == sorted(keys) and [n for _, n in first] == [10] * 5
    await _until(lambda: engine.leased_count == 50)
    # A quarter of the buffer (12) is free (11 sent, the 12th on the wire): the next
    # round gives it to the queues where the last one stopped, a quantum (10) at a time.
    node.let_through(11)
    await _until(lambda: len(node.store.lease_calls) == 2)
    assert node.store.lease_calls[1] == [(ring[0], 10), (ring[1], 2)]
    # Refilled to the brim (one more on the wire): 12 more sent make a quarter free.
    node.let_through(12)
    await _until(lambda: len(node.store.lease_calls) == 3)
    assert node.store.lease_calls[2] == [(ring[2], 10), (ring[3], 2)]
    node.let_through(12)
    await _until(lambda: len(node.store.lease_calls) == 4)
    assert node.store.lease_calls[3] == [(ring[4], 10), (ring[0], 2)]
    # Everything goes out in the end, once each.
    node.let_through(1000)
    await _until(lambda: engine.recorder.written == 200 and engine.leased_count == 0)
    assert sorted(r for rcpts in node.sent for r in rcpts) == sorted(
        f"u{i}@a.test" for i in range(40) for _ in tenants
    )


async def test_the_node_never_holds_more_than_max_leased(make: Callable[..., Any]) -> None:
    # Ten connections to the MX site: a buffer of 500, more than the node may hold.
    node: Node = await make(
        queue="max_leased = 100",
        rules=[{"name": "ten", "domains": ["*.test"], "connections": 10}],
    )
    engine = node.engine
    assert engine.max_leased == 100
    tenants = await _tenants(node, 5)
    keys = [await node.enqueue(t, "a.test", 40) for t in tenants]
    most = 0

    async def watch() -> None:
        nonlocal most
        while True:
            most = max(most, engine.leased_count)
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    try:
        engine.notify(keys)
        await _until(lambda: engine.leased_count == 100)
        await asyncio.sleep(0.3)
        # The budget, not the lane, bounded the round: 20 for each of the five queues.
        (first,) = node.store.lease_calls
        assert sorted(first) == sorted((k, 20) for k in keys)
        assert engine.leased_count == 100 and engine.budget() == 0
        node.let_through(1000)
        await _until(lambda: engine.recorder.written == 200 and engine.leased_count == 0)
    finally:
        watcher.cancel()
    assert most == 100
    for call in node.store.lease_calls:
        assert sum(limit for _, limit in call) <= 100
    delivered = await node.store.get_message(tenants[0], f"{tenants[0]}-a.test-0")
    assert delivered is not None
    assert [r.state for r in delivered.recipients] == [RecipientState.DELIVERED]


ONE_SOURCE = """
[[delivery.sources]]
name = "ip-a"
address = "127.0.0.2"
"""


@pytest.mark.parametrize("sources", ["", ONE_SOURCE], ids=["implicit", "one-source-pool"])
async def test_a_suspended_bucket_defers_the_implicit_sources_work_and_releases_a_pools(
    make: Callable[..., Any], sources: str
) -> None:
    # One connection per bucket: one item on the wire (held there by the gate), the
    # other two buffered.
    node: Node = await make(
        sources, rules=[{"name": "one", "domains": ["*.test"], "connections": 1}]
    )
    engine = node.engine
    (tenant,) = await _tenants(node, 1)
    key = await node.enqueue(tenant, "c.test", 3)
    engine.notify([key])
    await _until(lambda: engine.leased_count == 3)
    await _until(lambda: sum(len(s.buffer) for s in engine.sites) == 2)
    site = next(s for s in engine.sites if s.buffer)
    engine.suspend(site, 120.0, [])
    assert not site.buffer and engine.barred(site)
    await _until(lambda: engine.recorder.written == 2)
    states = []
    for i in range(3):
        message = await node.store.get_message(tenant, f"{tenant}-c.test-{i}")
        assert message is not None
        states.extend(message.recipients)
    back = [r for r in states if not r.leased]
    assert len(back) == 2 and len([r for r in states if r.leased]) == 1
    for r in back:
        assert r.state is RecipientState.QUEUED and r.attempts == 0
        assert r.next_attempt_at is not None
        if sources:
            # Handed back at once, for a source of the pool to take.
            assert r.next_attempt_at < time.time() + 5
        else:
            # The implicit source has no other: deferred until the suspension ends.
            assert r.next_attempt_at > time.time() + 100
            assert r.last_text is not None and "suspend" in r.last_text
    node.let_through(10)
