"""The store contract: deleting a tenant (a tombstone, its keys revoked, a pause, its
domains and webhooks gone), cancelling its queued mail and removing its suppressions in
batches; selecting queued mail by stream and tag in bounded pages; lifting a timed hold
once.

Every backend (fixture `store` in conftest.py).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from contract.store_helpers import NOW, message, tenant
from postline.config import load_config
from postline.control import Actor, ControlContext, queues, tenants
from postline.model import RecipientState
from postline.store import Store
from postline.store.base import (
    QUEUE_START,
    EventQuery,
    MessageMatch,
    QueueCursor,
    SenderDomain,
    Suppression,
    TenantRemoval,
    Webhook,
)
from postline.tenants import hash_key


def _hook(tenant_id: str, hook_id: str) -> Webhook:
    return Webhook(
        id=hook_id,
        tenant_id=tenant_id,
        url="https://hooks.example/in",
        events=(),
        description="",
        batch_size=10,
        secret="sealed:v1:x",
        old_secret=None,
        old_secret_until=None,
        status="active",
        disabled_reason="",
        created_at=NOW,
        updated_at=NOW,
        cursor=0,
        next_attempt_at=NOW,
    )


async def test_delete_tenant_leaves_a_tombstone_and_takes_its_identity(store: Store) -> None:
    a = await tenant(store, "acme")
    b = await tenant(store, "beta")
    for t, n in ((a, 2), (b, 1)):
        for i in range(n):
            await store.add_api_key(t, hash_key(f"key-{t}-{i}"), f"pk_{t[-4:]}{i}")
        await store.add_sender_domain(SenderDomain(t, "shop.test", NOW))
        await store.create_webhook(_hook(t, f"wh_{t}"))
    await store.set_paused(a, "one.test", True, now=NOW, reason="api")
    assert await store.key_identity(hash_key(f"key-{a}-0")) is not None

    removed = await store.delete_tenant(a, now=NOW + 5)
    assert removed == TenantRemoval(keys_revoked=2, domains=1, webhooks=1)
    assert await store.delete_tenant(a, now=NOW + 6) is None  # once
    assert await store.delete_tenant("tnt_none", now=NOW) is None

    tomb = await store.get_tenant(id=a)
    assert tomb is not None and tomb.deleted_at == NOW + 5 and tomb.name == "acme"
    assert (await store.get_tenant(name="acme")) == tomb
    assert [t.id for t in await store.list_tenants()] == [b]
    assert [t.id for t in await store.list_tenants(deleted=True)] == [a]
    assert await store.key_identity(hash_key(f"key-{a}-0")) is None
    assert await store.tenant_for_key(hash_key(f"key-{a}-1")) is None
    assert all(k.revoked_at == NOW + 5 for k in await store.api_keys(a))
    # Paused: new mail refused (status) and every queue held (domain '*').
    [status] = await store.tenant_statuses(a)
    assert status.status == "paused" and status.reason == "tenant deleted"
    pauses = {(p.tenant_id, p.domain) for p in await store.queue_pauses()}
    assert (a, "*") in pauses and (a, "one.test") not in pauses
    assert await store.list_sender_domains(a) == []
    assert await store.list_webhooks(a) == []
    # The other tenant keeps everything.
    assert await store.key_identity(hash_key(f"key-{b}-0")) is not None
    assert [d.tenant_id for d in await store.list_sender_domains(b)] == [b]
    assert [w.id for w in await store.list_webhooks(b)] == [f"wh_{b}"]
    assert await store.tenant_statuses(b) == []


async def test_cancel_queued_in_batches_with_events_leased_too(store: Store) -> None:
    a = await tenant(store, "acme")
    b = await tenant(store, "beta")
    await store.enqueue(
        [
            message(a, "x1@one.test", "x2@one.test", "y@two.test"),
            message(a, "x3@one.test", due=NOW + 3600),
            message(b, "z@one.test"),
        ]
    )
    leased = await store.lease("one.test", now=NOW, limit=1, lease_time=600, owner="n1")
    assert sum(len(m.recipients) for m in leased) == 1
    assert await store.cancel_queued(a, "one.test", now=NOW, node_id="n9", limit=2) == 2
    assert await store.cancel_queued(a, "one.test", now=NOW, node_id="n9", limit=2) == 1
    assert await store.cancel_queued(a, "one.test", now=NOW, node_id="n9", limit=2) == 0
    events = await store.events(EventQuery(tenant_id=a, types=["cancelled"]))
    assert sorted(e.recipient or "" for e in events) == [
        "x1@one.test",
        "x2@one.test",
        "x3@one.test",
    ]
    assert {e.node_id for e in events} == {"n9"}
    stats = {s.domain: s.depth for s in await store.queue_stats(a)}
    assert stats.get("one.test", 0) == 0 and stats["two.test"] == 1
    assert [q.depth for q in await store.domain_queues("one.test", now=NOW)] == [1]  # b's
    counts = await store.state_counts()
    assert counts.get(RecipientState.CANCELLED.value) == 3


async def test_purge_tenant_data_removes_suppressions_in_batches(store: Store) -> None:
    a = await tenant(store, "acme")
    b = await tenant(store, "beta")
    await store.add_suppressions(
        [Suppression(a, f"u{i}@x.test", "manual", NOW) for i in range(5)]
        + [
            Suppression(b, "keep@x.test", "manual", NOW),
            Suppression("*", "all@x.test", "manual", NOW),
        ]
    )
    assert await store.purge_tenant_data(a, limit=3) == 3
    assert await store.purge_tenant_data(a, limit=3) == 2
    assert await store.purge_tenant_data(a, limit=3) == 0
    assert await store.list_suppressions(a, now=NOW) == []
    assert [s.address for s in await store.list_suppressions(b, now=NOW)] == ["keep@x.test"]
    assert "all@x.test" in await store.suppressed(b, ["all@x.test"], now=NOW)


async def _walk(
    store: Store, tenant_id: str, match: MessageMatch, *, limit: int, bounce: bool = False
) -> tuple[int, int]:
    """Walk one queue to its end; (recipients changed, calls made)."""
    cursor: QueueCursor | None = QUEUE_START
    changed = calls = 0
    while cursor is not None:
        calls += 1
        if bounce:
            n, cursor = await store.bounce_matching(
                tenant_id,
                "one.test",
                match,
                now=NOW + 10,
                data={"category": "operator"},
                text="gone",
                after=cursor,
                limit=limit,
            )
        else:
            n, cursor = await store.retry_matching(
                tenant_id, "one.test", match, now=NOW + 10, after=cursor, limit=limit
            )
        changed += n
    return changed, calls


async def _streams(store: Store) -> tuple[str, str]:
    a = await tenant(store, "acme")
    b = await tenant(store, "beta")
    later = NOW + 3600
    news = [
        replace(message(a, f"n{i}@one.test", due=later, created=NOW + i), stream="broadcast")
        for i in range(5)
    ]
    tagged = replace(message(a, "t@one.test", due=later), tags=["spring", "t1"])
    plain = message(a, "p1@one.test", "p2@one.test", due=later)  # stream transactional, tag t1
    other = replace(message(b, "b@one.test", due=later), stream="broadcast")
    await store.enqueue([*news, tagged, plain, other])
    return a, b


async def test_retry_matching_selects_by_stream_in_bounded_pages(store: Store) -> None:
    a, b = await _streams(store)
    changed, calls = await _walk(store, a, MessageMatch(stream="broadcast"), limit=2)
    # 8 queued recipients looked at 2 per call: 4 full pages and the empty end.
    assert changed == 5 and calls == 5
    [q] = [q for q in await store.domain_queues("one.test", now=NOW + 10) if q.tenant_id == a]
    assert q.due == 5
    # Those due now already are not counted again; the other tenant's are untouched.
    assert (await _walk(store, a, MessageMatch(stream="broadcast"), limit=100))[0] == 0
    [qb] = [q for q in await store.domain_queues("one.test", now=NOW + 10) if q.tenant_id == b]
    assert qb.due == 0


async def test_retry_matching_skips_leased_recipients(store: Store) -> None:
    a, _ = await _streams(store)
    assert (await _walk(store, a, MessageMatch(tag="spring"), limit=3))[0] == 1
    leased = await store.lease("one.test", now=NOW + 20, limit=100, lease_time=600, owner="n1")
    assert [r.address for m in leased for r in m.recipients] == ["t@one.test"]
    # The recipient is leased now: a new retry leaves it alone.
    assert (await _walk(store, a, MessageMatch(tag="spring"), limit=3))[0] == 0


async def test_bounce_matching_selects_by_tag_and_stream(store: Store) -> None:
    a, _ = await _streams(store)
    assert (
        await _walk(store, a, MessageMatch(stream="transactional", tag="t1"), limit=3, bounce=True)
    )[0] == 3
    events = await store.events(EventQuery(tenant_id=a, types=["bounced"]))
    assert sorted(e.recipient or "" for e in events) == ["p1@one.test", "p2@one.test", "t@one.test"]
    assert {e.data.get("category") for e in events} == {"operator"}
    [q] = [q for q in await store.domain_queues("one.test", now=NOW) if q.tenant_id == a]
    assert q.depth == 5  # the broadcast mail is still queued
    assert (await _walk(store, a, MessageMatch(tag="spring"), limit=3, bounce=True))[0] == 0


async def test_lift_pause_removes_only_the_same_hold_once(store: Store) -> None:
    await store.set_paused("*", "one.test", True, now=NOW, reason="operator until=5")
    assert await store.lift_pause("*", "one.test", reason="operator until=9") is False
    assert await store.lift_pause("*", "one.test", reason="operator until=5") is True
    assert await store.lift_pause("*", "one.test", reason="operator until=5") is False
    assert await store.queue_pauses() == []


def _ctx(store: Store, node: str) -> ControlContext:
    return ControlContext(store, load_config(text="", environ={}), Actor.node(node), node_id=node)


async def test_expire_lifts_a_timed_suspension_once_over_a_fleet(store: Store) -> None:
    """Two nodes lift the same suspension at once: one audit entry, by the one that
    removed it."""
    applied: list[tuple[str, str, str, bool]] = []
    nodes = [
        replace(_ctx(store, n), on_pause=lambda t, d, p, n=n: applied.append((n, t, d, p)))
        for n in ("n1", "n2")
    ]
    await store.set_paused("*", "one.test", True, now=NOW, reason=f"operator until={NOW + 1:.3f}")
    await store.set_paused("*", "two.test", True, now=NOW, reason="operator")  # no end
    assert await queues.expire(nodes[0], NOW) == pytest.approx(NOW + 1, abs=0.001)
    await store.set_paused("*", "three.test", True, now=NOW, reason=f"operator until={NOW + 9}")
    assert applied == []
    results = await asyncio.gather(*(queues.expire(c, NOW + 2) for c in nodes))
    assert results == [NOW + 9, NOW + 9]  # the one end left
    entries = await store.audit_entries(tenant_id=None, after=0, limit=100)
    assert [(e.action, e.target, e.actor_kind, e.detail["expired"]) for e in entries] == [
        ("queue.resume", "*/one.test", "node", True)
    ]
    # The node that lifted it applies it; the other one too if it saw the hold expired
    # before it was gone (else its queue scan reads it).
    assert (entries[0].actor_id, "*", "one.test", False) in applied
    assert {a[1:] for a in applied} == {("*", "one.test", False)}
    assert {p.domain for p in await store.queue_pauses()} == {"two.test", "three.test"}


async def test_finish_deletions_cancels_what_came_after_the_request(store: Store) -> None:
    a = await tenant(store, "acme")
    b = await tenant(store, "beta")
    ctx = _ctx(store, "n1")
    # Deleted a minute ago (its request is over), then mail another node accepted with a
    # key it still trusted.
    assert await store.delete_tenant(a, now=time.time() - 60) is not None
    await store.enqueue([message(a, "x@one.test", "y@two.test"), message(b, "z@one.test")])
    await store.add_suppressions([Suppression(a, "s@x.test", "manual", NOW)])
    assert await tenants.finish_deletions(ctx) == 2
    assert all(s.depth == 0 for s in await store.queue_stats(a))
    assert await store.list_suppressions(a, now=NOW) == []
    assert [s.depth for s in await store.queue_stats(b)] == [1]
    assert await tenants.finish_deletions(ctx) == 0
    # A deletion still within its request's time is left to the request.
    assert await store.delete_tenant(b, now=time.time()) is not None
    assert await tenants.finish_deletions(ctx) == 0
    assert [s.depth for s in await store.queue_stats(b)] == [1]
