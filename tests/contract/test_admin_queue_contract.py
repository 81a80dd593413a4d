"""The store contract: what operators do to queues across tenants — the per-domain split,
the pause rows, retry now and bounce, a batch per transaction, counters kept right.

Every backend (fixture `store` in conftest.py).
"""

from __future__ import annotations

from contract.store_helpers import NOW, message, tenant
from postline.model import RecipientState
from postline.store import Store
from postline.store.base import EventQuery, QueuePause


async def _two_tenants(store: Store) -> tuple[str, str]:
    a = await tenant(store, "acme")
    b = await tenant(store, "beta")
    later = NOW + 3600
    await store.enqueue(
        [
            message(a, "x1@one.test", "x2@one.test", "y@two.test", due=later),
            message(a, "x3@one.test"),
            message(b, "z1@one.test", "z2@one.test", due=later),
        ]
    )
    return a, b


async def test_domain_queues_split_per_tenant(store: Store) -> None:
    a, b = await _two_tenants(store)
    queues = await store.domain_queues("one.test", now=NOW + 1)
    assert [(q.tenant_id, q.depth, q.deferred, q.due) for q in queues] == sorted(
        [(a, 3, 0, 1), (b, 2, 0, 0)]
    )
    assert all(q.oldest_at == NOW for q in queues)
    by = {q.tenant_id: q for q in queues}
    assert by[a].next_attempt_at == NOW and by[b].next_attempt_at == NOW + 3600
    capped = await store.domain_queues("one.test", now=NOW + 7200, due_cap=1)
    assert {q.due for q in capped} == {1}
    assert await store.domain_queues("none.test", now=NOW) == []


async def test_queue_pauses_list_every_hold_with_its_reason(store: Store) -> None:
    a, _ = await _two_tenants(store)
    await store.set_paused("*", "one.test", True, now=NOW, reason="operator until=99")
    await store.set_paused(a, "two.test", True, now=NOW, reason="api")
    assert await store.queue_pauses() == sorted(
        [
            QueuePause("*", "one.test", NOW, "operator until=99"),
            QueuePause(a, "two.test", NOW, "api"),
        ],
        key=lambda p: (p.tenant_id, p.domain),
    )


async def test_retry_queued_makes_waiting_mail_due_in_batches(store: Store) -> None:
    a, b = await _two_tenants(store)
    now = NOW + 10
    assert await store.retry_queued(a, "one.test", now=now, limit=1) == 1
    assert await store.retry_queued(a, "one.test", now=now, limit=1) == 1
    assert await store.retry_queued(a, "one.test", now=now, limit=1) == 0  # x3 was due
    [q] = [q for q in await store.domain_queues("one.test", now=now) if q.tenant_id == a]
    assert q.due == 3
    # Leased recipients are left alone; other tenants' queues too.
    leased = await store.lease("one.test", now=now, limit=10, lease_time=600, owner="n1")
    assert {r.tenant_id for m in leased for r in m.recipients} == {a}
    assert await store.retry_queued(a, "one.test", now=now + 1, limit=100) == 0
    [qb] = [q for q in await store.domain_queues("one.test", now=now) if q.tenant_id == b]
    assert qb.due == 0


async def test_bounce_queued_is_final_counted_and_adds_no_suppression(store: Store) -> None:
    a, b = await _two_tenants(store)
    data = {"category": "operator", "reason": "dead domain"}
    assert await store.bounce_queued(a, "one.test", now=NOW, data=data, limit=2, text="x") == 2
    assert await store.bounce_queued(a, "one.test", now=NOW, data=data, limit=2, text="x") == 1
    assert await store.bounce_queued(a, "one.test", now=NOW, data=data, limit=2) == 0
    events = await store.events(EventQuery(tenant_id=a, types=["bounced"]))
    assert sorted(e.recipient or "" for e in events) == [
        "x1@one.test",
        "x2@one.test",
        "x3@one.test",
    ]
    assert all(e.data["category"] == "operator" for e in events)
    assert all(e.data["reason"] == "dead domain" for e in events)
    assert await store.suppressed(a, ["x1@one.test", "x3@one.test"], now=NOW) == {}
    counts = await store.state_counts()
    assert counts == {"queued": 3, "bounced": 3}
    assert [s.depth for s in await store.queue_stats(a)] == [1]  # two.test
    assert [(s.domain, s.depth) for s in await store.queue_stats(None)] == [
        ("one.test", 2),
        ("two.test", 1),
    ]
    assert [q.tenant_id for q in await store.domain_queues("one.test", now=NOW)] == [b]


async def test_bounce_leaves_leased_recipients_to_their_delivery(store: Store) -> None:
    a, _ = await _two_tenants(store)
    leased = await store.lease("one.test", now=NOW, limit=10, lease_time=600, owner="n1")
    held = {(m.id, r.idx) for m in leased for r in m.recipients}
    assert len(held) == 1
    data = {"category": "operator"}
    assert await store.bounce_queued(a, "one.test", now=NOW, data=data) == 2
    ((mid, idx),) = held
    view = await store.get_message(a, mid)
    assert view is not None and view.recipients[idx].state is RecipientState.QUEUED
