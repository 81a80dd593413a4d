"""The store contract: suppressions and soft-bounce runs.

Every backend (fixture `store` in conftest.py).
"""

from __future__ import annotations

from contract.store_helpers import NOW, message, tenant
from postline.model import EventType, RecipientState
from postline.store import Store
from postline.store.base import (
    AttemptRecord,
    EventQuery,
    NewMessage,
    NewRecipient,
    Suppression,
)


async def test_suppressions(store: Store) -> None:
    a = await tenant(store, "a")
    b = await tenant(store, "b")
    await store.add_suppressions(
        [
            Suppression(a, "Ann@Example.TEST", "hard_bounce", NOW, source="bounce"),
            Suppression(a, "old@example.test", "manual", NOW - 100, expires_at=NOW - 1),
            Suppression("*", "everyone@example.test", "complaint", NOW),
            Suppression(b, "everyone@example.test", "manual", NOW),
        ]
    )
    found = await store.suppressed(
        a, ["ann@example.test", "OLD@example.test", "everyone@example.test", "x@y.test"], now=NOW
    )
    assert set(found) == {"ann@example.test", "everyone@example.test"}
    assert found["ann@example.test"].reason == "hard_bounce"
    assert found["everyone@example.test"].tenant_id == "*"
    # The tenant's own entry wins over the global one.
    assert (await store.suppressed(b, ["everyone@example.test"], now=NOW))[
        "everyone@example.test"
    ].reason == "manual"
    listed = await store.list_suppressions(a, now=NOW)
    assert [s.address for s in listed] == ["ann@example.test"]  # expired one hidden
    assert await store.list_suppressions(a, reason="complaint", now=NOW) == []
    assert await store.remove_suppression(a, "ANN@example.test")
    assert not await store.remove_suppression(a, "ann@example.test")
    assert await store.suppressed(a, ["ann@example.test"], now=NOW) == {}
    page = []
    await store.add_suppressions([Suppression(a, f"u{i}@x.test", "manual", NOW) for i in range(5)])
    after = ""
    while batch := await store.list_suppressions(a, after=after, limit=2, now=NOW):
        page.extend(s.address for s in batch)
        after = batch[-1].address
    assert page == [f"u{i}@x.test" for i in range(5)]


async def test_suppressed_recipients_are_stored_final(store: Store) -> None:
    tid = await tenant(store)
    m = message(tid, "a@one.test", "b@one.test")
    m = NewMessage(
        **{
            **{f: getattr(m, f) for f in m.__dataclass_fields__},
            "recipients": [
                NewRecipient(0, "a@one.test", "one.test"),
                NewRecipient(1, "b@one.test", "one.test", suppressed="complaint"),
            ],
        }
    )
    await store.enqueue([m])
    view = await store.get_message(tid, m.id)
    assert view is not None
    assert [r.state for r in view.recipients] == [RecipientState.QUEUED, RecipientState.SUPPRESSED]
    events = await store.events(EventQuery(tenant_id=tid))
    assert sorted((e.type, e.recipient) for e in events) == [
        ("accepted", "a@one.test"),
        ("suppressed", "b@one.test"),
    ]
    assert next(e for e in events if e.type == "suppressed").data["reason"] == "complaint"
    leased = await store.lease("one.test", now=NOW, limit=10, lease_time=10, owner="n")
    assert [r.address for m in leased for r in m.recipients] == ["a@one.test"]


async def test_outcomes_add_suppressions_and_soft_bounce_runs(store: Store) -> None:
    tid = await tenant(store)
    m = message(tid, "gone@one.test", "ok@one.test")
    await store.enqueue([m])
    [leased] = await store.lease("one.test", now=NOW, limit=10, lease_time=10, owner="n")
    gone, ok = leased.recipients
    await store.record(
        [
            AttemptRecord(
                m.id,
                gone.idx,
                tid,
                gone.address,
                RecipientState.BOUNCED,
                EventType.BOUNCED,
                NOW,
                code=550,
                enhanced="5.1.1",
                text="no such user",
                suppress="hard_bounce",
            ),
            AttemptRecord(
                m.id,
                ok.idx,
                tid,
                ok.address,
                RecipientState.DELIVERED,
                EventType.DELIVERED,
                NOW,
                code=250,
            ),
        ]
    )
    assert (await store.suppressed(tid, ["gone@one.test"], now=NOW))["gone@one.test"].reason == (
        "hard_bounce"
    )
    # Soft bounces suppress after a run of `limit` within `window`; a delivery ends a run.
    args = {"now": NOW, "window": 100.0, "limit": 3, "expires_at": None}
    assert await store.note_soft_bounces(tid, ["full@x.test"], **args) == []
    assert await store.note_soft_bounces(tid, ["full@x.test"], **{**args, "now": NOW + 1}) == []
    assert await store.note_soft_bounces(tid, ["full@x.test"], **{**args, "now": NOW + 2}) == [
        "full@x.test"
    ]
    assert (await store.suppressed(tid, ["full@x.test"], now=NOW + 3))["full@x.test"].reason == (
        "soft_bounce"
    )
    assert await store.note_soft_bounces(tid, ["slow@x.test"], **args) == []
    assert await store.note_soft_bounces(tid, ["slow@x.test"], **{**args, "now": NOW + 1}) == []
    # The run is over after the window: counting starts again.
    assert await store.note_soft_bounces(tid, ["slow@x.test"], **{**args, "now": NOW + 500}) == []
    m2 = message(tid, "slow@x.test")
    await store.enqueue([m2])
    [l2] = await store.lease("x.test", now=NOW + 600, limit=10, lease_time=10, owner="n")
    r2 = l2.recipients[0]
    await store.record(
        [
            AttemptRecord(
                m2.id,
                r2.idx,
                tid,
                r2.address,
                RecipientState.DELIVERED,
                EventType.DELIVERED,
                NOW + 501,
                code=250,
            )
        ]
    )
    later = {**args, "now": NOW + 502}
    assert await store.note_soft_bounces(tid, ["slow@x.test"], **later) == []
    assert await store.note_soft_bounces(tid, ["slow@x.test"], **{**later, "now": NOW + 503}) == []
