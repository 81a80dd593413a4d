"""The ingestor reports the store's write health for /readyz: not ready while the store
refuses mail, ready again after a pause or the next write that succeeds."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from postline.errors import StoreUnavailable
from postline.ingest.service import Ingestor


class _Store:
    def __init__(self) -> None:
        self.fail = True

    async def enqueue(self, messages: Any, **_: Any) -> None:
        if self.fail:
            raise StoreUnavailable("SQLite: database or disk is full")
        return


async def test_refusals_make_the_node_not_ready_until_a_pause_or_a_success() -> None:
    store = _Store()
    ingestor = Ingestor(store, node_id="n1", hostname="mx.test")  # type: ignore[arg-type]
    assert ingestor.writes_healthy(0.0)
    with pytest.raises(StoreUnavailable):
        await ingestor.enqueue("t1", [])
    refused = ingestor.store_refused_at
    assert refused is not None and ingestor.refused_writes == 1
    assert not ingestor.writes_healthy(refused + 1)
    assert ingestor.writes_healthy(refused + 10)  # offered again after the pause
    store.fail = False
    await ingestor.enqueue("t1", [])
    assert ingestor.store_refused_at is None and ingestor.writes_healthy(refused + 1)


class _SlowStore:
    def __init__(self) -> None:
        self.delay = 0.0
        self.started = asyncio.Event()

    async def enqueue(self, messages: Any, **_: Any) -> None:
        self.started.set()
        await asyncio.sleep(self.delay)


async def test_slow_acknowledgements_make_the_node_not_ready() -> None:
    store = _SlowStore()
    ingestor = Ingestor(store, node_id="n1", hostname="mx.test", ack_budget=0.05)  # type: ignore[arg-type]
    await ingestor.enqueue("t1", [])
    assert ingestor.acks_healthy(time.monotonic())
    # A write in progress for longer than the budget: not ready while it lasts...
    store.delay = 0.3
    slow = asyncio.create_task(ingestor.enqueue("t1", []))
    await store.started.wait()
    assert ingestor.acks_healthy(time.monotonic())
    await asyncio.sleep(0.1)
    assert not ingestor.acks_healthy(time.monotonic())
    await slow
    # ...and for a while after it finished, then ready again.
    done = time.monotonic()
    assert not ingestor.acks_healthy(done + 1)
    assert ingestor.acks_healthy(done + 11)
