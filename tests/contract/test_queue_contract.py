"""The store contract: ingest and the queue (enqueue, idempotency, leases, outcomes,
counters, pauses).

Every backend (fixture `store` in conftest.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from contract.store_helpers import NOW, message, outcome, tenant
from postline.errors import IntegrityViolation
from postline.model import EventType, RecipientState
from postline.store import Store
from postline.store.base import (
    AttemptRecord,
    EventQuery,
    IdempotencyClaim,
    LeaseRequest,
)


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


async def test_enqueue_counts_every_recipient_by_state_and_queue(store: Store) -> None:
    a, b = await tenant(store, "a"), await tenant(store, "b")
    first = message(a, "x@one.test", "y@one.test", "z@two.test")
    first = replace(
        first,
        recipients=[replace(r, suppressed="bounce") if r.idx == 1 else r for r in first.recipients],
    )
    await store.enqueue(
        [first, message(a, "w@one.test"), message(b, "v@one.test")],
        leased={first.id: [2]},
        node_id="n1",
        lease_until=NOW + 60,
    )
    await store.enqueue([message(a, "u@two.test", "t@one.test")])  # onto existing counts
    assert await store.state_counts() == {"queued": 6, "suppressed": 1}
    depth = {s.domain: s.depth for s in await store.queue_stats(a)}
    assert depth == {"one.test": 3, "two.test": 2}
    assert [(s.domain, s.depth) for s in await store.queue_stats(b)] == [("one.test", 1)]
    # The counts follow the rows on: outcomes move recipients out of the queue.
    leased = await store.lease("two.test", now=NOW + 3600, limit=10, lease_time=30, owner="n")
    assert sorted(r.address for m in leased for r in m.recipients) == ["u@two.test", "z@two.test"]
    for m in leased:
        await store.record(outcome(m, RecipientState.DELIVERED, EventType.DELIVERED))
    assert await store.state_counts() == {"queued": 4, "suppressed": 1, "delivered": 2}
    assert {s.domain: s.depth for s in await store.queue_stats(a)} == {"one.test": 3}


async def test_large_batches_store_every_row(store: Store) -> None:
    # Past the rows one SQLite statement takes (bulk.MAX_ROWS = 1024), in both shapes:
    # one message to many recipients, and many messages of one recipient.
    tid = await tenant(store)
    wide = message(tid, *(f"r{i}@d{i % 7}.test" for i in range(2500)))
    many = [message(tid, f"m{i}@d{i % 3}.test") for i in range(1537)]
    await store.enqueue([wide])
    await store.enqueue(many)
    assert await store.state_counts() == {"queued": 2500 + 1537}
    depth = {s.domain: s.depth for s in await store.queue_stats(tid)}
    expected: dict[str, int] = {}
    for i in range(2500):
        expected[f"d{i % 7}.test"] = expected.get(f"d{i % 7}.test", 0) + 1
    for i in range(1537):
        expected[f"d{i % 3}.test"] = expected.get(f"d{i % 3}.test", 0) + 1
    assert depth == expected
    view = await store.get_message(tid, wide.id)
    assert view is not None
    assert [r.address for r in view.recipients] == [r.address for r in wide.recipients]
    last = await store.get_message(tid, many[-1].id)
    assert last is not None and last.recipients[0].address == "m1536@d0.test"
    seen = 0
    after = 0
    while True:
        page = await store.events(EventQuery(tenant_id=tid, after=after, limit=1000))
        if not page:
            break
        seen += len(page)
        after = page[-1].id
    assert seen == 2500 + 1537


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
    # The oldest queued recipient of each domain, over every tenant.
    assert depths.oldest == {
        "one.test": pytest.approx(NOW - 30),
        "two.test": pytest.approx(NOW - 30),
    }
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
    assert depths.oldest == {"one.test": pytest.approx(m2.created_at)}
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
