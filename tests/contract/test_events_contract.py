"""The store contract: the event log and inbound reports.

Every backend (fixture `store` in conftest.py).
"""

from __future__ import annotations

from contract.store_helpers import NOW, message, tenant
from postline.model import EventType
from postline.store import Store
from postline.store.base import (
    EventQuery,
    InboundMessage,
    NewEvent,
)


async def test_event_paging_and_filters(store: Store) -> None:
    tid = await tenant(store)
    msgs = [message(tid, f"u{i}@one.test") for i in range(7)]
    await store.enqueue(msgs)
    page1 = await store.events(EventQuery(tenant_id=tid, limit=3))
    page2 = await store.events(EventQuery(tenant_id=tid, limit=3, after=page1[-1].id))
    page3 = await store.events(EventQuery(tenant_id=tid, limit=3, after=page2[-1].id))
    seen = [e.recipient for e in page1 + page2 + page3]
    assert seen == [f"u{i}@one.test" for i in range(7)]
    assert len({e.id for e in page1 + page2 + page3}) == 7
    by_msg = await store.events(EventQuery(tenant_id=tid, message_id=msgs[3].id))
    assert [e.recipient for e in by_msg] == ["u3@one.test"]
    by_rcpt = await store.events(EventQuery(tenant_id=tid, recipient="u5@one.test"))
    assert [e.message_id for e in by_rcpt] == [msgs[5].id]
    assert await store.events(EventQuery(tenant_id=tid, since=NOW + 1)) == []
    assert len(await store.events(EventQuery(tenant_id=tid, until=NOW + 1))) == 7
    assert await store.events(EventQuery(tenant_id=tid, types=["delivered"])) == []


async def test_append_events_and_inbound(store: Store) -> None:
    tid = await tenant(store)
    await store.append_events(
        [NewEvent(NOW, tid, EventType.COMPLAINED, "m1", 0, "a@one.test", {"feedback": "abuse"})],
        node_id="n1",
    )
    [e] = await store.events(EventQuery(tenant_id=tid, types=["complained"]))
    assert (e.message_id, e.recipient, e.node_id, e.data) == (
        "m1",
        "a@one.test",
        "n1",
        {"feedback": "abuse"},
    )

    report = InboundMessage("in1", NOW, "", ["b-x@bounce.test"], "127.0.0.1", b"raw report")
    await store.store_inbound(report)
    [got] = await store.pending_inbound(10, now=NOW)
    assert (got.id, got.rcpt_to, got.body, got.attempts) == (
        "in1",
        ["b-x@bounce.test"],
        b"raw report",
        0,
    )
    # Claimed: another worker does not get it until the claim lapses.
    assert await store.pending_inbound(10, now=NOW + 1, claim_for=30) == []
    await store.finish_inbound("in1", result="retry", now=NOW + 2, state="pending")
    [again] = await store.pending_inbound(10, now=NOW + 3)
    assert again.attempts == 1
    await store.finish_inbound("in1", result="done", now=NOW + 4)
    assert await store.pending_inbound(10, now=NOW + 100) == []
