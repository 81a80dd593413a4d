"""The retention role of the store, on every backend (fixture `store` in conftest.py)."""

from __future__ import annotations

import time

from contract.store_helpers import message, tenant
from postline.model import EventType, RecipientState
from postline.store import Store
from postline.store.base import AttemptRecord, EventQuery, InboundMessage, NewEvent

DAY = 86400.0


async def finish(store: Store, tenant_id: str, at: float, *addresses: str) -> str:
    """A message whose recipients were all delivered at ``at``."""
    m = message(tenant_id, *addresses, created=at - 60)
    await store.enqueue([m])
    await store.record(
        [
            AttemptRecord(
                message_id=m.id,
                idx=r.idx,
                tenant_id=tenant_id,
                address=r.address,
                state=RecipientState.DELIVERED,
                event=EventType.DELIVERED,
                at=at,
            )
            for r in m.recipients
        ]
    )
    return m.id


async def test_bodies_then_messages_go_once_every_recipient_is_final(store: Store) -> None:
    now = time.time()
    a = await tenant(store)
    old = await finish(store, a, now - 10 * DAY, "x@d1.test", "y@d2.test")
    recent = await finish(store, a, now - 1 * DAY, "x@d1.test")
    waiting = message(a, "q@d3.test", created=now - 10 * DAY, due=now + 3600)
    await store.enqueue([waiting])

    assert await store.purge_bodies(now - 7 * DAY, limit=100, now=now) == 1
    assert await store.purge_bodies(now - 7 * DAY, limit=100, now=now) == 0
    view = await store.get_message(a, old)
    assert view is not None and view.body_deleted_at == now
    assert [r.state for r in view.recipients] == [RecipientState.DELIVERED] * 2
    for kept in (recent, waiting.id):
        v = await store.get_message(a, kept)
        assert v is not None and v.body_deleted_at is None
    counts = await store.state_counts()

    assert await store.purge_messages(now - 7 * DAY, limit=100) == 1
    assert await store.get_message(a, old) is None
    assert await store.get_message(a, waiting.id) is not None  # still queued
    after = await store.state_counts()
    if hasattr(store, "fold_counts"):
        await store.fold_counts()
        after = await store.state_counts()
    assert after.get("delivered", 0) == counts.get("delivered", 0) - 2
    assert after.get("queued", 0) == counts.get("queued", 0)


async def test_purges_go_in_batches(store: Store) -> None:
    now = time.time()
    a = await tenant(store)
    for _ in range(5):
        await finish(store, a, now - 40 * DAY, "x@d.test")
    assert await store.purge_messages(now - 30 * DAY, limit=2) == 2
    assert await store.purge_messages(now - 30 * DAY, limit=2) == 2
    assert await store.purge_messages(now - 30 * DAY, limit=2) == 1
    assert await store.purge_messages(now - 30 * DAY, limit=2) == 0


async def test_old_events_and_inbound_reports_go(store: Store) -> None:
    now = time.time()
    a = await tenant(store)
    await store.append_events(
        [
            NewEvent(now - 40 * DAY, a, EventType.COMPLAINED, None, None, "old@x.test"),
            NewEvent(now, a, EventType.COMPLAINED, None, None, "new@x.test"),
        ]
    )
    deleted = 0
    for _ in range(5):
        deleted += await store.purge_events(now - 30 * DAY, limit=100)
    found = await store.events(EventQuery(a, limit=100))
    assert [e.recipient for e in found] == ["new@x.test"]
    await store.store_inbound(
        InboundMessage("in1", now - 40 * DAY, "a@x.test", ["b@y.test"], "127.0.0.1", b"x")
    )
    await store.store_inbound(
        InboundMessage("in2", now - 40 * DAY, "a@x.test", ["b@y.test"], "127.0.0.1", b"x")
    )
    await store.finish_inbound("in1", result="ok", now=now - 40 * DAY)
    assert await store.purge_inbound(now - 30 * DAY, limit=100) == 1  # in2 is pending
    assert await store.purge_inbound(now - 30 * DAY, limit=100) == 0
    assert await store.size_on_disk() > 0
    await store.compact()  # nothing to free here: it must simply not fail


async def test_space_comes_back(store: Store) -> None:
    """Bodies deleted: SQLite hands the pages back (incremental vacuum); PostgreSQL drops
    a day of events as a whole partition."""
    now = time.time()
    a = await tenant(store)
    big = b"Subject: big\r\n\r\n" + b"x" * 200_000 + b"\r\n"
    for _ in range(20):
        m = message(a, "x@d.test", body=big, created=now - 20 * DAY)
        await store.enqueue([m])
        (leased,) = await store.lease("d.test", now=now, limit=10, lease_time=60, owner="n")
        await store.record(
            [
                AttemptRecord(
                    message_id=leased.id,
                    idx=0,
                    tenant_id=a,
                    address="x@d.test",
                    state=RecipientState.DELIVERED,
                    event=EventType.DELIVERED,
                    at=now - 10 * DAY,
                )
            ]
        )
    before = await store.size_on_disk()
    assert await store.purge_bodies(now - 7 * DAY, limit=100, now=now) == 20
    freed = 0
    for _ in range(10):
        freed += await store.compact()
    if not hasattr(store, "fold_counts"):  # SQLite: the file shrinks
        assert freed >= 20 * 150_000
        path = store.path  # type: ignore[attr-defined]
        await store.close()  # the last connection checkpoints the write-ahead log
        assert path.stat().st_size < before - 20 * 150_000
        await store.open()
        return
    # PostgreSQL: yesterday's partition is dropped whole once past the horizon.
    day_start = (now // DAY) * DAY
    await store.append_events(
        [NewEvent(day_start - 3600, a, EventType.COMPLAINED, None, None, "y@x.test")]
    )
    await store.append_events([NewEvent(now, a, EventType.COMPLAINED, None, None, "t@x.test")])
    partitions = await _partitions(store)
    assert f"events_p{int(day_start - DAY)}" in partitions
    await store.purge_events(day_start, limit=100)
    assert f"events_p{int(day_start - DAY)}" not in await _partitions(store)
    kept = await store.events(EventQuery(a, limit=100, types=["complained"]))
    assert [e.recipient for e in kept] == ["t@x.test"]


async def _partitions(store: Store) -> set[str]:
    async def op(conn: object) -> set[str]:
        rows = await conn.fetch(  # type: ignore[attr-defined]
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass"
        )
        return {r[0] for r in rows}

    return await store._call(op)  # type: ignore[attr-defined]
