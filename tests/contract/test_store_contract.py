"""The contract every Store backend must pass (fixture `store` in conftest.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from postline.errors import IntegrityViolation
from postline.model import EventType, RecipientState
from postline.model.ids import new_id
from postline.store import Store
from postline.store.base import (
    AttemptRecord,
    DkimKeyRecord,
    EventQuery,
    IdempotencyClaim,
    InboundMessage,
    LeasedMessage,
    LeaseRequest,
    NewEvent,
    NewMessage,
    NewRecipient,
    ReputationCount,
    SenderDomain,
    Suppression,
    TenantStatus,
)

NOW = time.time()


def message(
    tenant_id: str,
    *addresses: str,
    body: bytes = b"Subject: hi\r\n\r\nhello\r\n",
    due: float | None = None,
    created: float | None = None,
) -> NewMessage:
    created = NOW if created is None else created
    return NewMessage(
        id=new_id(),
        tenant_id=tenant_id,
        mail_from="sender@example.org",
        body=body,
        recipients=[
            NewRecipient(i, a, a.rpartition("@")[2].lower()) for i, a in enumerate(addresses)
        ],
        created_at=created,
        next_attempt_at=created if due is None else due,
        expires_at=created + 86400,
        message_id_header=f"<{new_id()}@example.org>",
        subject="hi",
        tags=["t1"],
        metadata={"k": "v"},
    )


async def tenant(store: Store, name: str = "acme") -> str:
    return (await store.create_tenant(name)).id


def outcome(
    leased: LeasedMessage, state: RecipientState, event: EventType, **kw: object
) -> list[AttemptRecord]:
    return [
        AttemptRecord(
            message_id=leased.id,
            idx=r.idx,
            tenant_id=r.tenant_id,
            address=r.address,
            state=state,
            event=event,
            at=NOW,
            **kw,  # type: ignore[arg-type]
        )
        for r in leased.recipients
    ]


async def test_tenants_and_keys(store: Store) -> None:
    t = await store.create_tenant("acme")
    assert (await store.get_tenant(name="acme")) == t
    assert (await store.get_tenant(id=t.id)) == t
    assert await store.get_tenant(name="nobody") is None
    with pytest.raises(IntegrityViolation):
        await store.create_tenant("acme")
    await store.add_api_key(t.id, "hash-1", "pl_abc")
    assert (await store.tenant_for_key("hash-1")) == t
    assert await store.tenant_for_key("hash-2") is None
    assert await store.revoke_api_key(t.id, "pl_abc")
    assert await store.tenant_for_key("hash-1") is None
    assert [x.name for x in await store.list_tenants()] == ["acme"]


async def test_enqueue_stores_body_once_and_a_row_per_recipient(store: Store) -> None:
    tid = await tenant(store)
    m = message(tid, "a@one.test", "b@one.test", "c@two.test")
    assert await store.enqueue([m]) is None
    view = await store.get_message(tid, m.id)
    assert view is not None
    assert [r.address for r in view.recipients] == ["a@one.test", "b@one.test", "c@two.test"]
    assert {r.state for r in view.recipients} == {RecipientState.QUEUED}
    assert view.size == len(m.body)
    assert view.tags == ["t1"] and view.metadata == {"k": "v"}
    events = await store.events(EventQuery(tenant_id=tid))
    assert [e.type for e in events] == ["accepted"] * 3
    assert (await store.state_counts()) == {"queued": 3}


async def test_tenants_see_only_their_own_data(store: Store) -> None:
    a = await tenant(store, "a")
    b = await tenant(store, "b")
    m = message(a, "x@one.test")
    await store.enqueue([m])
    assert await store.get_message(b, m.id) is None
    assert await store.events(EventQuery(tenant_id=b)) == []
    assert await store.queue_stats(b) == []
    assert await store.cancel(b, m.id, now=NOW) == 0
    assert [s.depth for s in await store.queue_stats(a)] == [1]


async def test_idempotency_replays_and_stores_nothing_new(store: Store) -> None:
    tid = await tenant(store)
    claim = IdempotencyClaim("k1", "h1", 202, '{"id": 1}', NOW)
    assert (
        await store.enqueue([message(tid, "a@one.test")], idempotency=claim, tenant_id=tid) is None
    )
    again = await store.enqueue(
        [message(tid, "a@one.test")],
        idempotency=IdempotencyClaim("k1", "h2", 202, '{"id": 2}', NOW),
        tenant_id=tid,
    )
    assert again is not None
    assert (again.request_hash, again.status, again.response) == ("h1", 202, '{"id": 1}')
    assert (await store.state_counts()) == {"queued": 1}
    # Keys are per tenant.
    other = await tenant(store, "other")
    assert (
        await store.enqueue([message(other, "a@one.test")], idempotency=claim, tenant_id=other)
        is None
    )


async def test_idempotency_under_concurrency(store: Store) -> None:
    tid = await tenant(store)
    results = await asyncio.gather(
        *(
            store.enqueue(
                [message(tid, "a@one.test")],
                idempotency=IdempotencyClaim("same", f"h{i}", 202, f"{i}", NOW),
                tenant_id=tid,
            )
            for i in range(20)
        )
    )
    assert sum(r is None for r in results) == 1
    assert (await store.state_counts()) == {"queued": 1}
    stored = await store.get_idempotency(tid, "same")
    assert stored is not None
    assert all(r is None or r == stored for r in results)


async def test_purge_idempotency(store: Store) -> None:
    tid = await tenant(store)
    await store.enqueue(
        [message(tid, "a@one.test")],
        idempotency=IdempotencyClaim("old", "h", 202, "{}", NOW - 100_000),
        tenant_id=tid,
    )
    assert await store.purge_idempotency(NOW - 86400) == 1
    assert await store.get_idempotency(tid, "old") is None


async def test_due_queues_and_lease_per_domain(store: Store) -> None:
    tid = await tenant(store)
    await store.enqueue(
        [message(tid, f"u{i}@one.test", created=NOW - 10 + i) for i in range(5)]
        + [message(tid, "x@two.test", due=NOW + 60)]
    )
    due = {d.domain: d.next_attempt_at for d in await store.due_queues(owner="n1")}
    assert set(due) == {"one.test", "two.test"}
    assert due["one.test"] == pytest.approx(NOW - 10)
    assert due["two.test"] == pytest.approx(NOW + 60)

    leased = await store.lease("one.test", now=NOW, limit=3, lease_time=30, owner="n1")
    assert [
        m.recipients[0].address for m in sorted(leased, key=lambda m: m.recipients[0].created_at)
    ] == [
        "u0@one.test",
        "u1@one.test",
        "u2@one.test",
    ]
    assert all(m.body.startswith(b"Subject: hi") for m in leased)
    # Leased rows are not handed out again while the lease holds...
    more = await store.lease("one.test", now=NOW, limit=10, lease_time=30, owner="n2")
    assert sorted(m.recipients[0].address for m in more) == ["u3@one.test", "u4@one.test"]
    assert await store.lease("one.test", now=NOW + 1, limit=10, lease_time=30, owner="n2") == []
    # ...but come back once it expires (a node that died).
    back = await store.lease("one.test", now=NOW + 31, limit=10, lease_time=30, owner="n2")
    assert len(back) == 5
    # A scheduled message is not due before its time.
    assert await store.lease("two.test", now=NOW, limit=10, lease_time=30, owner="n1") == []
    assert (
        len(await store.lease("two.test", now=NOW + 61, limit=10, lease_time=30, owner="n1")) == 1
    )


async def test_lease_groups_recipients_of_one_message(store: Store) -> None:
    tid = await tenant(store)
    m = message(tid, "a@one.test", "b@one.test", "c@two.test")
    await store.enqueue([m])
    leased = await store.lease("one.test", now=NOW, limit=10, lease_time=30, owner="n1")
    assert len(leased) == 1
    assert leased[0].id == m.id
    assert leased[0].mail_from == "sender@example.org"
    assert leased[0].message_id_header == m.message_id_header
    assert [r.address for r in leased[0].recipients] == ["a@one.test", "b@one.test"]


async def test_record_outcomes(store: Store) -> None:
    tid = await tenant(store)
    m = message(tid, "a@one.test", "b@one.test", "c@one.test")
    await store.enqueue([m])
    [leased] = await store.lease("one.test", now=NOW, limit=10, lease_time=30, owner="n1")
    a, b, c = leased.recipients
    await store.record(
        [
            AttemptRecord(
                m.id,
                a.idx,
                tid,
                a.address,
                RecipientState.DELIVERED,
                EventType.DELIVERED,
                NOW,
                code=250,
                enhanced="2.0.0",
                text="ok",
                mx="mx.one.test",
            ),
            AttemptRecord(
                m.id,
                b.idx,
                tid,
                b.address,
                RecipientState.BOUNCED,
                EventType.BOUNCED,
                NOW,
                code=550,
                enhanced="5.1.1",
                text="no such user",
                mx="mx.one.test",
            ),
            AttemptRecord(
                m.id,
                c.idx,
                tid,
                c.address,
                RecipientState.QUEUED,
                EventType.DEFERRED,
                NOW,
                next_attempt_at=NOW + 120,
                code=451,
                enhanced="4.7.1",
                text="greylisted",
                mx="mx.one.test",
            ),
        ],
        node_id="n1",
    )
    view = await store.get_message(tid, m.id)
    assert view is not None
    states = {r.address: r for r in view.recipients}
    assert states["a@one.test"].state is RecipientState.DELIVERED
    assert states["b@one.test"].state is RecipientState.BOUNCED
    assert states["b@one.test"].last_enhanced == "5.1.1"
    c_view = states["c@one.test"]
    assert c_view.state is RecipientState.QUEUED and c_view.attempts == 1
    assert c_view.next_attempt_at == pytest.approx(NOW + 120)
    assert not c_view.leased
    assert c_view.last_code == 451 and c_view.last_mx == "mx.one.test"
    events = await store.events(
        EventQuery(tenant_id=tid, types=["delivered", "bounced", "deferred"])
    )
    assert sorted(e.type for e in events) == ["bounced", "deferred", "delivered"]
    deferred = next(e for e in events if e.type == "deferred")
    assert deferred.data["code"] == 451 and deferred.data["mx"] == "mx.one.test"
    assert deferred.node_id == "n1" and deferred.recipient == "c@one.test"
    # The deferred one is due again only at its new time.
    assert await store.lease("one.test", now=NOW + 60, limit=10, lease_time=30, owner="n1") == []
    again = await store.lease("one.test", now=NOW + 121, limit=10, lease_time=30, owner="n1")
    assert [r.attempts for r in again[0].recipients] == [1]


async def test_release_does_not_count_an_attempt(store: Store) -> None:
    tid = await tenant(store)
    m = message(tid, "a@one.test")
    await store.enqueue([m])
    [leased] = await store.lease("one.test", now=NOW, limit=10, lease_time=30, owner="n1")
    await store.record(
        outcome(
            leased, RecipientState.QUEUED, EventType.DEFERRED, next_attempt_at=NOW, counted=False
        )
    )
    [again] = await store.lease("one.test", now=NOW, limit=10, lease_time=30, owner="n1")
    assert again.recipients[0].attempts == 0


async def test_cancel(store: Store) -> None:
    tid = await tenant(store)
    m = message(tid, "a@one.test", "b@one.test")
    await store.enqueue([m])
    [leased] = await store.lease("one.test", now=NOW, limit=1, lease_time=30, owner="n1")
    await store.record(outcome(leased, RecipientState.DELIVERED, EventType.DELIVERED, code=250))
    assert await store.cancel(tid, m.id, now=NOW) == 1
    assert await store.cancel(tid, m.id, now=NOW) == 0
    view = await store.get_message(tid, m.id)
    assert view is not None
    assert sorted(r.state.value for r in view.recipients) == ["cancelled", "delivered"]
    assert await store.lease("one.test", now=NOW + 100, limit=10, lease_time=30, owner="n1") == []
    assert [e.type for e in await store.events(EventQuery(tenant_id=tid, types=["cancelled"]))] == [
        "cancelled"
    ]


async def test_deferral_does_not_revive_a_cancelled_recipient(store: Store) -> None:
    tid = await tenant(store)
    m = message(tid, "a@one.test", "b@one.test")
    await store.enqueue([m])
    [leased] = await store.lease("one.test", now=NOW, limit=10, lease_time=30, owner="n1")
    await store.cancel(tid, m.id, now=NOW)
    a, b = leased.recipients
    await store.record(
        [
            AttemptRecord(
                m.id,
                a.idx,
                tid,
                a.address,
                RecipientState.QUEUED,
                EventType.DEFERRED,
                NOW,
                next_attempt_at=NOW + 1,
                code=451,
            ),
            # A delivery that completed while the cancel came in is still the truth.
            AttemptRecord(
                m.id,
                b.idx,
                tid,
                b.address,
                RecipientState.DELIVERED,
                EventType.DELIVERED,
                NOW,
                code=250,
            ),
        ]
    )
    view = await store.get_message(tid, m.id)
    assert view is not None
    assert [r.state.value for r in view.recipients] == ["cancelled", "delivered"]


async def test_pause_and_resume(store: Store) -> None:
    a = await tenant(store, "a")
    b = await tenant(store, "b")
    await store.enqueue([message(a, "x@one.test"), message(b, "y@one.test")])
    await store.set_paused(a, "one.test", True, now=NOW, reason="test")
    leased = await store.lease("one.test", now=NOW, limit=10, lease_time=30, owner="n1")
    assert [m.tenant_id for m in leased] == [b]
    stats = await store.queue_stats(a)
    assert [(s.domain, s.depth, s.paused) for s in stats] == [("one.test", 1, True)]
    await store.set_paused(a, "one.test", False, now=NOW)
    assert [
        m.tenant_id
        for m in await store.lease("one.test", now=NOW, limit=10, lease_time=30, owner="n1")
    ] == [a]
    # '*' pauses a domain for every tenant; a paused domain with nothing queued is listed.
    await store.set_paused("*", "two.test", True, now=NOW)
    await store.set_paused(a, "three.test", True, now=NOW)
    await store.enqueue([message(b, "z@two.test")])
    assert await store.lease("two.test", now=NOW, limit=10, lease_time=30, owner="n1") == []
    assert ("three.test", 0, True) in [
        (s.domain, s.depth, s.paused) for s in await store.queue_stats(a)
    ]


async def test_queue_stats(store: Store) -> None:
    tid = await tenant(store)
    await store.enqueue(
        [message(tid, "a@one.test", created=NOW - 50), message(tid, "b@one.test", "c@two.test")]
    )
    stats = {s.domain: s for s in await store.queue_stats(tid)}
    assert stats["one.test"].depth == 2
    assert stats["one.test"].oldest_at == pytest.approx(NOW - 50)
    assert stats["two.test"].depth == 1
    assert {s.domain for s in await store.queue_stats()} == {"one.test", "two.test"}


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


async def test_many_concurrent_writers(store: Store) -> None:
    tid = await tenant(store)
    await asyncio.gather(
        *(store.enqueue([message(tid, f"u{i}@d{i % 7}.test")]) for i in range(300))
    )
    assert (await store.state_counts()) == {"queued": 300}
    assert len(await store.due_queues(owner="n1")) == 7


async def test_a_bad_write_among_concurrent_ones_fails_alone(store: Store) -> None:
    tid = await tenant(store)
    first = message(tid, "a@one.test")
    await store.enqueue([first])
    calls = [store.enqueue([message(tid, f"u{i}@d{i % 5}.test")]) for i in range(100)]
    calls.insert(50, store.enqueue([first]))  # the same message id again
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert [i for i, r in enumerate(results) if isinstance(r, BaseException)] == [50]
    assert isinstance(results[50], IntegrityViolation)
    assert await store.state_counts() == {"queued": 101}
    assert (await store.queue_depths()).total == 101


async def test_a_stale_lease_holder_cannot_reset_a_newer_lease(store: Store) -> None:
    tid = await tenant(store)
    m = message(tid, "a@one.test")
    await store.enqueue([m])
    [first] = await store.lease("one.test", now=NOW, limit=1, lease_time=10, owner="n1")
    # n1's lease runs out; n2 leases the recipient again.
    [second] = await store.lease("one.test", now=NOW + 11, limit=1, lease_time=10, owner="n2")
    assert second.id == first.id
    r = first.recipients[0]

    def release(owner: str) -> AttemptRecord:
        return AttemptRecord(
            m.id,
            r.idx,
            tid,
            r.address,
            RecipientState.QUEUED,
            None,
            NOW + 12,
            next_attempt_at=NOW + 12,
            counted=False,
            owner=owner,
        )

    await store.record([release("n1")])
    # n2 still holds it: nobody else may lease it before n2's lease ends.
    assert await store.lease("one.test", now=NOW + 13, limit=1, lease_time=10, owner="n3") == []
    await store.record([release("n2")])
    assert len(await store.lease("one.test", now=NOW + 13, limit=1, lease_time=10, owner="n3")) == 1


async def test_renew_and_release_leases(store: Store) -> None:
    tid = await tenant(store)
    msgs = [message(tid, f"u{i}@one.test") for i in range(3)]
    await store.enqueue(msgs)
    leased = await store.lease("one.test", now=NOW, limit=3, lease_time=10, owner="n1")
    refs = [(m.id, m.recipients[0].idx, "one.test") for m in leased]
    # Renewed leases outlive their first expiry; someone else's lease is not renewed.
    renewed = await store.renew_leases("n1", refs[:2], until=NOW + 100)
    assert sorted(renewed) == sorted((m, i) for m, i, _ in refs[:2])
    assert await store.renew_leases("n2", refs, until=NOW + 100) == []
    back = await store.lease("one.test", now=NOW + 20, limit=10, lease_time=10, owner="n2")
    assert [m.id for m in back] == [refs[2][0]]
    # A node starting up hands back everything it had leased.
    assert await store.release_leases("n1", now=NOW + 21) == 2
    assert (
        len(await store.lease("one.test", now=NOW + 21, limit=10, lease_time=10, owner="n3")) == 2
    )


async def test_due_queues_pages_through_every_queue(store: Store) -> None:
    a = await tenant(store, "a")
    b = await tenant(store, "b")
    await store.enqueue([message(a, f"u@d{i:03d}.test", due=NOW + i) for i in range(25)])
    await store.enqueue([message(b, "u@d000.test", due=NOW + 100)])
    seen: list[tuple[str, str]] = []
    after = ("", "")
    while True:
        page = await store.due_queues(owner="n1", limit=10, after=after)
        seen.extend((q.tenant_id, q.domain) for q in page)
        if len(page) < 10:
            break
        after = (page[-1].tenant_id, page[-1].domain)
    expected = sorted([(a, f"d{i:03d}.test") for i in range(25)] + [(b, "d000.test")])
    assert seen == expected


async def test_due_queues_skip_paused_and_own_leases(store: Store) -> None:
    a = await tenant(store, "a")
    await store.enqueue([message(a, "x@one.test"), message(a, "y@two.test", due=NOW + 50)])
    await store.enqueue([message(a, "z@two.test", due=NOW + 80)])
    await store.lease_many([LeaseRequest(a, "one.test", 10)], now=NOW, lease_time=30, owner="n1")
    # n1 holds every recipient of one.test: nothing of it is due for n1; for n2 the lease
    # expiry is (n1 may die).
    mine = {q.domain: q.next_attempt_at for q in await store.due_queues(owner="n1")}
    assert mine["one.test"] is None
    assert mine["two.test"] == pytest.approx(NOW + 50)
    theirs = {q.domain: q.next_attempt_at for q in await store.due_queues(owner="n2")}
    assert theirs["one.test"] == pytest.approx(NOW + 30)
    await store.set_paused(a, "two.test", True, now=NOW)
    assert {q.domain for q in await store.due_queues(owner="n2")} == {"one.test"}


async def test_lease_many_per_queue_fair_and_drained(store: Store) -> None:
    a = await tenant(store, "a")
    b = await tenant(store, "b")
    await store.enqueue([message(a, f"a{i}@one.test", created=NOW - 100 + i) for i in range(5)])
    await store.enqueue([message(b, f"b{i}@one.test", created=NOW - 50 + i) for i in range(3)])
    await store.enqueue([message(a, "later@one.test", due=NOW + 40)])
    got = await store.lease_many(
        [LeaseRequest(a, "one.test", 2), LeaseRequest(b, "one.test", 10)],
        now=NOW,
        lease_time=30,
        owner="n1",
    )
    assert [(q.tenant_id, q.count, q.drained) for q in got] == [(a, 2, False), (b, 3, True)]
    # Oldest due first within a queue, and one tenant's queue never gives another's mail.
    assert sorted(m.recipients[0].address for m in got[0].messages) == [
        "a0@one.test",
        "a1@one.test",
    ]
    assert {m.tenant_id for m in got[1].messages} == {b}
    assert got[1].next_due is None  # everything b has queued is held by n1
    rest = await store.lease_many(
        [LeaseRequest(a, "one.test", 10)], now=NOW, lease_time=30, owner="n1"
    )
    assert rest[0].count == 3 and rest[0].drained
    assert rest[0].next_due == pytest.approx(NOW + 40)
    # Another node sees n1's leases come due when they end.
    other = await store.lease_many(
        [LeaseRequest(a, "one.test", 10)], now=NOW, lease_time=30, owner="n2"
    )
    assert other[0].count == 0 and other[0].drained
    assert other[0].next_due == pytest.approx(NOW + 30)
    # A paused queue gives nothing and has nothing due.
    await store.set_paused(b, "one.test", True, now=NOW)
    paused = await store.lease_many(
        [LeaseRequest(b, "one.test", 10)], now=NOW + 100, lease_time=30, owner="n2"
    )
    assert paused[0].count == 0 and paused[0].drained and paused[0].next_due is None


async def test_counters_follow_every_change(store: Store) -> None:
    a = await tenant(store, "a")
    b = await tenant(store, "b")
    m1 = message(a, "x@one.test", "y@one.test", "z@two.test", created=NOW - 30)
    m2 = message(b, "w@one.test")
    await store.enqueue([m1, m2])
    assert await store.state_counts() == {"queued": 4}
    depths = await store.queue_depths()
    assert depths.total == 4 and depths.top == [("one.test", 3), ("two.test", 1)]
    [leased] = await store.lease_many(
        [LeaseRequest(a, "one.test", 10)], now=NOW, lease_time=30, owner="n1"
    )
    x, y = leased.messages[0].recipients
    await store.record(
        [
            AttemptRecord(m1.id, x.idx, a, x.address, RecipientState.DELIVERED,
                          EventType.DELIVERED, NOW, code=250),
            AttemptRecord(m1.id, y.idx, a, y.address, RecipientState.QUEUED,
                          EventType.DEFERRED, NOW, next_attempt_at=NOW + 60, code=451),
        ]
    )  # fmt: skip
    assert await store.state_counts() == {"queued": 3, "delivered": 1}
    [one] = await store.queue_stats(a, domain="one.test")
    assert (one.depth, one.deferred) == (1, 1)
    assert one.oldest_at == pytest.approx(NOW - 30)
    assert one.next_attempt_at == pytest.approx(NOW + 60)
    # A second deferral of the same recipient is not counted twice.
    [again] = await store.lease_many(
        [LeaseRequest(a, "one.test", 10)], now=NOW + 61, lease_time=30, owner="n1"
    )
    r = again.messages[0].recipients[0]
    await store.record(
        [AttemptRecord(m1.id, r.idx, a, r.address, RecipientState.QUEUED, EventType.DEFERRED,
                       NOW, next_attempt_at=NOW + 120, code=451)]
    )  # fmt: skip
    [one] = await store.queue_stats(a, domain="one.test")
    assert (one.depth, one.deferred) == (1, 1)
    assert await store.cancel(a, m1.id, now=NOW) == 2
    assert await store.state_counts() == {"queued": 1, "delivered": 1, "cancelled": 2}
    assert await store.queue_stats(a) == []
    [all_one] = await store.queue_stats(None)
    assert (all_one.domain, all_one.depth) == ("one.test", 1)
    depths = await store.queue_depths()
    assert depths.total == 1 and depths.top == [("one.test", 1)]
    await store.drop_empty_queues()  # (counters of empty queues; none of the views change)
    assert (await store.queue_depths()).total == 1
    assert [(s.domain, s.depth) for s in await store.queue_stats(b)] == [("one.test", 1)]


async def test_queue_stats_pages_in_domain_order(store: Store) -> None:
    a = await tenant(store, "a")
    await store.enqueue([message(a, f"u{i}@d{i:02d}.test") for i in range(12)])
    await store.set_paused(a, "d05x.test", True, now=NOW)
    pages: list[list[str]] = []
    after = ""
    while True:
        page = await store.queue_stats(a, after=after, limit=5)
        pages.append([s.domain for s in page])
        if len(page) < 5:
            break
        after = page[-1].domain
    flat = [d for p in pages for d in p]
    assert flat == sorted([f"d{i:02d}.test" for i in range(12)] + ["d05x.test"])
    assert all(len(p) <= 5 for p in pages)


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


async def test_tenant_status_compare_and_set_with_event(store: Store) -> None:
    a = await tenant(store, "a")
    assert await store.tenant_statuses(a) == []
    warned = TenantStatus(a, "warned", "bounce rate 6 %", NOW, "reputation")
    event = NewEvent(NOW, a, EventType.REPUTATION_WARNING, None, None, None, {"bounce_rate": 0.06})
    # No row is 'ok': a change expected from 'paused' does not apply.
    assert not await store.set_tenant_status(warned, expected={"paused"}, event=event)
    assert await store.set_tenant_status(warned, expected={"ok"}, event=event, node_id="n1")
    # The same change again (another node judging at once) finds 'warned' and does nothing.
    assert not await store.set_tenant_status(warned, expected={"ok"}, event=event)
    [got] = await store.tenant_statuses(a)
    assert got == warned
    [e] = await store.events(EventQuery(tenant_id=a, types=["reputation_warning"]))
    assert (e.message_id, e.recipient_idx, e.node_id, e.data) == (
        None,
        None,
        "n1",
        {"bounce_rate": 0.06},
    )
    assert [s.tenant_id for s in await store.tenant_statuses()] == [a]


async def test_a_paused_tenant_is_held_in_every_domain(store: Store) -> None:
    a = await tenant(store, "a")
    b = await tenant(store, "b")
    await store.enqueue(
        [message(a, "x@one.test"), message(a, "x@two.test"), message(b, "y@one.test")]
    )
    paused = TenantStatus(a, "paused", "bounce rate 12 %", NOW, "reputation")
    assert await store.set_tenant_status(paused, expected={"ok", "warned"})
    assert (a, "*") in await store.paused_queues()
    leased = await store.lease("one.test", now=NOW, limit=10, lease_time=30, owner="n1")
    assert [m.tenant_id for m in leased] == [b]
    assert await store.lease("two.test", now=NOW, limit=10, lease_time=30, owner="n1") == []
    assert {(s.domain, s.paused) for s in await store.queue_stats(a)} == {
        ("one.test", True),
        ("two.test", True),
    }
    # Held mail stays queued (and ageing); resuming releases it and moves the judgement on.
    resumed = TenantStatus(a, "ok", "", NOW + 5, "operator", judged_since=NOW + 5)
    assert await store.set_tenant_status(resumed, expected={"paused", "warned"})
    assert (a, "*") not in await store.paused_queues()
    leased = await store.lease("two.test", now=NOW + 5, limit=10, lease_time=30, owner="n1")
    assert [m.tenant_id for m in leased] == [a]
    # Counts of buckets before judged_since are no longer judged for that tenant.
    await store.add_reputation_counts(
        [
            ReputationCount(a, "transactional", NOW - 60, bounced=100),
            ReputationCount(a, "transactional", NOW + 10, delivered=3),
            ReputationCount(b, "transactional", NOW - 60, delivered=7),
        ]
    )
    totals = await store.reputation_totals(since=NOW - 3600)
    assert [(t.tenant_id, t.delivered, t.bounced) for t in totals] == sorted([(a, 3, 0), (b, 7, 0)])


async def test_sender_domains_and_keys(store: Store) -> None:
    a = await tenant(store, "a")
    b = await tenant(store, "b")
    key = DkimKeyRecord("pl202611r", "rsa-sha256", "MIIBIj...", b"\x00sealed\xff", NOW)
    domain = SenderDomain(a, "shop.test", NOW, keys=(key,))
    assert await store.add_sender_domain(domain) is True
    assert await store.add_sender_domain(domain) is False  # already there
    assert await store.add_sender_domain(SenderDomain(b, "shop.test", NOW)) is True
    got = await store.get_sender_domain(a, "shop.test")
    assert got is not None and got.status == "pending" and got.keys == (key,)
    assert await store.get_sender_domain(a, "other.test") is None
    assert [d.domain for d in await store.list_sender_domains(a)] == ["shop.test"]
    assert {(d.tenant_id, d.domain) for d in await store.list_sender_domains()} == {
        (a, "shop.test"),
        (b, "shop.test"),
    }
    rotated = DkimKeyRecord(
        "pl202612e", "ed25519-sha256", "11qY...", b"sealed2", NOW + 1, "pending"
    )
    assert await store.add_dkim_key(a, "shop.test", rotated) is True
    assert await store.update_sender_domain(
        a,
        "shop.test",
        status="verified",
        checked_at=NOW + 2,
        verified_at=NOW + 2,
        check='[{"status": "ok"}]',
        key_states={"pl202611r": "retired", "pl202612e": "active"},
    )
    got = await store.get_sender_domain(a, "shop.test")
    assert got is not None and got.status == "verified" and got.verified_at == NOW + 2
    assert got.check == '[{"status": "ok"}]'
    assert {k.selector: k.state for k in got.keys} == {
        "pl202611r": "retired",
        "pl202612e": "active",
    }
    # Tenant b's domain of the same name is untouched.
    other = await store.get_sender_domain(b, "shop.test")
    assert other is not None and other.status == "pending" and other.keys == ()
    assert await store.remove_sender_domain(a, "shop.test") is True
    assert await store.remove_sender_domain(a, "shop.test") is False
    assert await store.get_sender_domain(a, "shop.test") is None
    assert await store.get_sender_domain(b, "shop.test") is not None
