"""The store contract: admin tokens and the audit log.

Every backend (fixture `store` in conftest.py).
"""

from __future__ import annotations

import pytest

from postline.errors import IntegrityViolation
from postline.store import Store
from postline.store.base import NewAuditEntry, Reroute


async def test_admin_tokens(store: Store) -> None:
    assert await store.admin_tokens() == []
    a = await store.add_admin_token("ops", "hash-a", "pla_aaaaaaa")
    b = await store.add_admin_token("ci", "hash-b", "pla_bbbbbbb")
    with pytest.raises(IntegrityViolation):
        await store.add_admin_token("again", "hash-a", "pla_aaaaaaa")
    assert [t.id for t in await store.admin_tokens()] == [a.id, b.id]
    assert await store.admin_token_for_hash("hash-a") == a
    assert await store.admin_token_for_hash("hash-x") is None

    await store.touch_admin_token(a.id, now=1234.5)
    found = await store.admin_token_for_hash("hash-a")
    assert found is not None and found.last_used_at == 1234.5

    assert await store.revoke_admin_token(a.id, now=2000.0)
    assert not await store.revoke_admin_token(a.id, now=2001.0)
    assert not await store.revoke_admin_token("no-such-id", now=2001.0)
    assert await store.admin_token_for_hash("hash-a") is None
    listed = {t.id: t for t in await store.admin_tokens()}
    assert listed[a.id].revoked_at == 2000.0 and listed[b.id].revoked_at is None


def entry(action: str, tenant_id: str | None, at: float = 100.0) -> NewAuditEntry:
    return NewAuditEntry(
        at=at,
        actor_kind="admin_token",
        actor_id="tok-1",
        tenant_id=tenant_id,
        action=action,
        target=tenant_id or "tok-2",
        request_id="req-1",
        detail={"reason": "spam trap hits", "nested": {"n": 1}},
    )


async def test_audit_log_pages_by_id_and_filters_by_tenant(store: Store) -> None:
    assert await store.audit_entries() == []
    ids = [
        await store.append_audit(entry("tenant.create", "t1", 100.0)),
        await store.append_audit(entry("admin_token.create", None, 101.0)),
        await store.append_audit(entry("tenant.pause", "t1", 102.0)),
        await store.append_audit(entry("tenant.create", "t2", 103.0)),
    ]
    assert ids == sorted(ids) and len(set(ids)) == 4

    everything = await store.audit_entries()
    assert [e.id for e in everything] == ids
    first = everything[0]
    assert (first.at, first.actor_kind, first.actor_id, first.tenant_id) == (
        100.0,
        "admin_token",
        "tok-1",
        "t1",
    )
    assert (first.action, first.target, first.request_id) == ("tenant.create", "t1", "req-1")
    assert first.detail == {"reason": "spam trap hits", "nested": {"n": 1}}
    assert everything[1].tenant_id is None

    page = await store.audit_entries(limit=2)
    assert [e.id for e in page] == ids[:2]
    rest = await store.audit_entries(after=page[-1].id, limit=2)
    assert [e.id for e in rest] == ids[2:]
    assert await store.audit_entries(after=ids[-1]) == []

    t1 = await store.audit_entries(tenant_id="t1")
    assert [e.action for e in t1] == ["tenant.create", "tenant.pause"]
    assert [e.id for e in await store.audit_entries(tenant_id="t1", after=ids[0])] == [ids[2]]
    assert await store.audit_entries(tenant_id="nobody") == []


async def test_reroutes_replace_by_selector_and_are_removed_by_id(store: Store) -> None:
    assert await store.reroutes() == []
    a = Reroute("r1", "example.com", "", "127.0.0.1", 2525, 100.0, 200.0, "maintenance")
    b = Reroute("r2", "", "google", "relay.test", 25, 101.0, 300.0, "")
    await store.add_reroute(a)
    await store.add_reroute(b)
    assert await store.reroutes() == [a, b]
    # The same selector again replaces the row (a new id, host and time).
    a2 = Reroute("r3", "example.com", "", "127.0.0.2", 2526, 102.0, 400.0, "longer")
    await store.add_reroute(a2)
    assert await store.reroutes() == [b, a2]
    assert await store.remove_reroute("r1") is None
    assert await store.remove_reroute("r3") == a2
    assert await store.reroutes() == [b]
    assert not b.active(300.0) and b.active(299.0)
