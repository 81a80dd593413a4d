"""The ingestor reports the store's write health for /readyz: not ready while the store
refuses mail, ready again after a pause or the next write that succeeds."""

from __future__ import annotations

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
