"""The store contract: reputation counts.

Every backend (fixture `store` in conftest.py).
"""

from __future__ import annotations

from contract.store_helpers import tenant
from postline.store import Store
from postline.store.base import (
    ReputationCount,
)


async def test_reputation_counts_add_up_per_tenant_stream_and_bucket(store: Store) -> None:
    a = await tenant(store, "a")
    b = await tenant(store, "b")
    await store.add_reputation_counts(
        [
            ReputationCount(a, "transactional", 1000.0, delivered=5, bounced=1),
            ReputationCount(a, "transactional", 1000.0, delivered=2, complained=1),
            ReputationCount(a, "bulk", 1000.0, bounced=3),
            ReputationCount(a, "transactional", 2000.0, delivered=10),
            ReputationCount(b, "transactional", 2000.0, delivered=4),
            ReputationCount(b, "transactional", 3000.0),  # empty: nothing stored
        ]
    )
    # Another writer (node) adds to the same bucket.
    await store.add_reputation_counts([ReputationCount(a, "transactional", 2000.0, bounced=2)])
    totals = await store.reputation_totals(since=0.0)
    got = [(t.tenant_id, t.stream, t.delivered, t.bounced, t.complained) for t in totals]
    assert got == sorted(
        [
            (a, "bulk", 0, 3, 0),
            (a, "transactional", 17, 3, 1),
            (b, "transactional", 4, 0, 0),
        ]
    )
    # Only buckets starting at or after `since`; one tenant.
    assert [
        (t.stream, t.delivered, t.bounced)
        for t in await store.reputation_totals(since=1500.0, tenant_id=a)
    ] == [("transactional", 10, 2)]
    assert await store.reputation_totals(since=5000.0) == []
    assert await store.purge_reputation_counts(1500.0) == 2
    assert {(t.tenant_id, t.stream) for t in await store.reputation_totals(since=0.0)} == {
        (a, "transactional"),
        (b, "transactional"),
    }
