"""The store contract: traffic per minute, and the bounded message search the operator
dashboard uses.

Every backend (fixture `store` in conftest.py).
"""

from __future__ import annotations

import dataclasses

from contract.store_helpers import NOW, message, tenant
from postline.store import Store
from postline.store.base import ActivityCount


async def test_activity_adds_up_per_minute_and_is_purged(store: Store) -> None:
    await store.add_activity(
        [
            ActivityCount(600.0, accepted=5, delivered=2),
            ActivityCount(600.0, deferred=1, bounced=1),
            ActivityCount(660.0, complained=2),
            ActivityCount(720.0),  # empty: nothing stored
        ]
    )
    # Another node adds to the same minute.
    await store.add_activity([ActivityCount(660.0, accepted=3, delivered=4)])
    assert await store.activity(since=0.0) == [
        ActivityCount(600.0, 5, 2, 1, 1, 0),
        ActivityCount(660.0, 3, 4, 0, 0, 2),
    ]
    assert await store.activity(since=601.0) == [ActivityCount(660.0, 3, 4, 0, 0, 2)]
    assert await store.purge_activity(660.0) == 1
    assert [c.bucket for c in await store.activity(since=0.0)] == [660.0]


async def test_find_messages_by_recipient_and_tag_among_the_latest(store: Store) -> None:
    a = await tenant(store, "a")
    b = await tenant(store, "b")
    old = dataclasses.replace(message(a, "Ann@one.test"), tags=["invoice"], created_at=NOW - 60)
    mid = dataclasses.replace(message(b, "bob@two.test", "ann@one.test"), tags=["news"])
    new = dataclasses.replace(
        message(a, "carl@one.test"), tags=["invoice", "q3"], created_at=NOW + 60
    )
    await store.enqueue([old, mid, new])
    # Any case, every tenant, newest first.
    assert await store.find_messages(recipient="ANN@one.test") == [mid.id, old.id]
    assert await store.find_messages(tag="invoice") == [new.id, old.id]
    assert await store.find_messages(tag="invoice", recipient="ann@one.test") == [old.id]
    assert await store.find_messages(tag="nope") == []
    assert await store.find_messages(tag="invoice", limit=1) == [new.id]
    # Only the latest `scan` messages are looked at.
    assert await store.find_messages(recipient="ann@one.test", scan=2) == [mid.id]
