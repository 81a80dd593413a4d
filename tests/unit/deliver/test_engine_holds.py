"""Queue holds made on other nodes reach the engine through its reads of the store,
without undoing a hold this node made while a read was under way. A real engine on a
temporary SQLite store; nothing is sent (no queue has mail)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postline.config import load_config
from postline.deliver.engine import DeliveryEngine
from postline.dns.resolver import MXResult, Resolver
from postline.metrics import Metrics
from postline.store.sqlite.backend import SQLiteStore
from postline.throttle.memory import MemoryThrottleBackend
from postline.throttle.rules import ThrottleRules


class NoDns(Resolver):
    async def mx(self, domain: str) -> MXResult:
        return MXResult(domain, "nxdomain", detail="no DNS here")

    async def addresses(self, host: str) -> tuple[str, ...]:
        return ()


class GatedStore(SQLiteStore):
    """The SQLite store; a read of the holds can be held at a gate after it read them."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate: asyncio.Event | None = None

    async def paused_queues(self) -> set[tuple[str, str]]:
        holds = await super().paused_queues()
        if self.gate is not None:
            await self.gate.wait()
        return holds


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[DeliveryEngine]:
    config = load_config(text='[queue]\nscan_interval = "1h"\n', environ={})
    store = GatedStore(tmp_path / "postline.db")
    await store.open()
    e = DeliveryEngine(
        config=config,
        store=store,
        resolver=NoDns(),
        rules=ThrottleRules.load([]),
        throttle=MemoryThrottleBackend(),
        metrics=Metrics(),
        node_id="node-1",
    )
    try:
        yield e
    finally:
        await store.close()


async def test_holds_from_the_store_are_applied_and_lifted(engine: DeliveryEngine) -> None:
    store = engine.store
    await store.set_paused("*", "a.test", True, now=1.0, reason="operator")
    await store.set_paused("t1", "*", True, now=1.0, reason="reputation")
    await engine._load_pauses()
    assert engine.due.paused == {("*", "a.test"), ("t1", "*")}
    assert engine.tenant_held("t1")
    await store.set_paused("*", "a.test", False, now=2.0)
    await engine._load_pauses()
    assert engine.due.paused == {("t1", "*")}


async def test_a_hold_made_here_during_a_read_is_not_undone_by_it(
    engine: DeliveryEngine,
) -> None:
    store = engine.store
    assert isinstance(store, GatedStore)
    await engine._load_pauses()
    store.gate = asyncio.Event()
    reading = asyncio.create_task(engine._load_pauses())  # reads: no holds
    await asyncio.sleep(0.05)
    # Meanwhile an operator suspends a domain on this node: stored, and applied here.
    await store.set_paused("*", "b.test", True, now=1.0, reason="operator")
    engine.set_paused("*", "b.test", True)
    store.gate.set()
    await reading
    assert ("*", "b.test") in engine.due.paused
    store.gate = None
    await engine._load_pauses()  # the next read has it: nothing changes
    assert ("*", "b.test") in engine.due.paused
