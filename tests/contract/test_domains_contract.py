"""The store contract: sender domains and their DKIM keys.

Every backend (fixture `store` in conftest.py).
"""

from __future__ import annotations

from contract.store_helpers import NOW, tenant
from postline.store import Store
from postline.store.base import (
    DkimKeyRecord,
    SenderDomain,
)


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
