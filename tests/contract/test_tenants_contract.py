"""The store contract: tenants, API keys and tenant statuses.

Every backend (fixture `store` in conftest.py).
"""

from __future__ import annotations

import pytest

from contract.store_helpers import NOW, message, tenant
from postline.errors import IntegrityViolation
from postline.model import EventType
from postline.store import Store
from postline.store.base import (
    EventQuery,
    NewEvent,
    ReputationCount,
    TenantStatus,
)


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


async def test_api_key_scopes_names_and_use(store: Store) -> None:
    t = await store.create_tenant("acme")
    other = await store.create_tenant("other")
    every = await store.add_api_key(t.id, "hash-all", "pl_all")
    send = await store.add_api_key(
        t.id, "hash-send", "pl_send", name="mailer", scopes=["send", "read", "send"]
    )
    assert every.scopes is None and every.name == ""
    assert send.scopes == ("read", "send") and send.name == "mailer"
    # A key with no scope at all is not one with every scope.
    none = await store.add_api_key(t.id, "hash-none", "pl_none", scopes=[])
    assert none.scopes == ()

    found = await store.key_identity("hash-send")
    assert found is not None
    assert (found.tenant, found.key_id, found.prefix) == (t, send.id, "pl_send")
    assert found.scopes == ("read", "send") and found.last_used_at is None
    assert found.allows("send") and not found.allows("webhooks")
    every_found = await store.key_identity("hash-all")
    assert every_found is not None and every_found.scopes is None
    assert every_found.allows("webhooks")
    none_found = await store.key_identity("hash-none")
    assert none_found is not None and not none_found.allows("send")
    assert await store.key_identity("hash-unknown") is None

    await store.touch_api_key(send.id, now=NOW)
    listed = await store.api_keys(t.id)
    assert {k.id for k in listed} == {every.id, send.id, none.id}
    [got] = [k for k in listed if k.id == send.id]
    assert (got.last_used_at, got.revoked_at, got.scopes) == (NOW, None, ("read", "send"))
    assert await store.api_keys(other.id) == []

    # Revoking is by tenant and id: another tenant's id does nothing, a second revoke too.
    assert not await store.revoke_api_key_id(other.id, send.id, now=NOW)
    assert await store.revoke_api_key_id(t.id, send.id, now=NOW + 1)
    assert not await store.revoke_api_key_id(t.id, send.id, now=NOW + 2)
    assert await store.key_identity("hash-send") is None
    assert await store.tenant_for_key("hash-send") is None
    [gone] = [k for k in await store.api_keys(t.id) if k.id == send.id]
    assert gone.revoked_at == NOW + 1


async def test_api_key_scopes_and_rate_change(store: Store) -> None:
    t = await store.create_tenant("acme")
    other = await store.create_tenant("other")
    key = await store.add_api_key(t.id, "hash-k", "pl_k", name="app", rate=5, burst=10)

    # Another tenant's id changes nothing; the key's own tenant replaces every field.
    assert not await store.update_api_key(other.id, key.id, scopes=None, rate=1, burst=1)
    assert await store.update_api_key(t.id, key.id, scopes=["send", "read"], rate=2, burst=None)
    [got] = await store.api_keys(t.id)
    assert (got.scopes, got.rate, got.burst, got.name) == (("read", "send"), 2, None, "app")
    found = await store.key_identity("hash-k")
    assert found is not None and (found.scopes, found.rate, found.burst) == (
        ("read", "send"),
        2,
        None,
    )
    # Back to every scope and the configured defaults.
    assert await store.update_api_key(t.id, key.id, scopes=None, rate=None, burst=None)
    [got] = await store.api_keys(t.id)
    assert (got.scopes, got.rate, got.burst) == (None, None, None)
    # A revoked key is not changed.
    assert await store.revoke_api_key_id(t.id, key.id, now=NOW)
    assert not await store.update_api_key(t.id, key.id, scopes=None, rate=3, burst=3)
    [got] = await store.api_keys(t.id)
    assert got.rate is None


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
