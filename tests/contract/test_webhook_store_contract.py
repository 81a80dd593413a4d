"""The webhook role of the store, on every backend (fixture `store` in conftest.py)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from contract.store_helpers import message, tenant
from postline.model import EventType
from postline.store import Store
from postline.store.base import EventQuery, NewEvent, Webhook, WebhookDelivery

NOW = time.time()


def hook(tenant_id: str, hook_id: str = "wh_1", **kw: object) -> Webhook:
    base = Webhook(
        id=hook_id,
        tenant_id=tenant_id,
        url="https://hooks.example/in",
        events=(),
        description="d",
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
    return replace(base, **kw)  # type: ignore[arg-type]


def delivery(
    h: Webhook, msg_id: str, first: int, last: int, status: str, **kw: object
) -> WebhookDelivery:
    base = WebhookDelivery(
        id=msg_id,
        webhook_id=h.id,
        tenant_id=h.tenant_id,
        status=status,
        first_event=first,
        last_event=last,
        count=last - first + 1,
        attempts=1,
        created_at=NOW,
        updated_at=NOW,
        response_code=200 if status == "ok" else 500,
        latency_ms=1.5,
        error="" if status == "ok" else "HTTP 500",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


async def events(store: Store, tenant_id: str, n: int) -> list[int]:
    await store.append_events(
        [
            NewEvent(NOW, tenant_id, EventType.COMPLAINED, None, None, f"a{i}@x.test")
            for i in range(n)
        ]
    )
    found = await store.events(EventQuery(tenant_id, limit=1000))
    return [e.id for e in found]


async def test_endpoints_are_kept_per_tenant(store: Store) -> None:
    a, b = await tenant(store, "a"), await tenant(store, "b")
    await store.create_webhook(hook(a, "wh_a", events=("bounced", "delivered")))
    await store.create_webhook(hook(b, "wh_b"))
    got = await store.get_webhook(a, "wh_a")
    assert got is not None and got.events == ("bounced", "delivered") and got.batch_size == 10
    assert await store.get_webhook(b, "wh_a") is None
    assert (await store.get_webhook(None, "wh_a")) == got
    assert [h.id for h in await store.list_webhooks(a)] == ["wh_a"]
    assert {h.id for h in await store.list_webhooks()} == {"wh_a", "wh_b"}
    updated = await store.update_webhook(
        a, "wh_a", {"events": ["bounced"], "url": "https://n.example/"}, now=NOW + 1
    )
    assert (
        updated is not None
        and updated.events == ("bounced",)
        and updated.url == "https://n.example/"
    )
    assert updated.updated_at == NOW + 1
    assert await store.update_webhook(b, "wh_a", {"description": "x"}, now=NOW) is None
    with pytest.raises(ValueError, match="cannot be changed"):
        await store.update_webhook(a, "wh_a", {"tenant_id": b}, now=NOW)
    assert not await store.delete_webhook(b, "wh_a")
    assert await store.delete_webhook(a, "wh_a")
    assert await store.get_webhook(a, "wh_a") is None


async def test_one_owner_at_a_time_and_leases_run_out(store: Store) -> None:
    a = await tenant(store)
    await store.create_webhook(hook(a, "wh_1"))
    await store.create_webhook(hook(a, "wh_2", next_attempt_at=NOW + 60))
    await store.create_webhook(hook(a, "wh_3", status="disabled"))
    first = await store.claim_webhooks("n1", now=NOW, lease_time=30, limit=10)
    assert [h.id for h in first] == ["wh_1"] and first[0].lease_owner == "n1"
    assert await store.claim_webhooks("n2", now=NOW + 1, lease_time=30, limit=10) == []
    assert await store.renew_webhooks("n2", ["wh_1"], until=NOW + 100) == []
    assert await store.renew_webhooks("n1", ["wh_1"], until=NOW + 50) == ["wh_1"]
    assert await store.claim_webhooks("n2", now=NOW + 40, lease_time=30, limit=10) == []
    taken = await store.claim_webhooks("n2", now=NOW + 51, lease_time=30, limit=10)
    assert [h.id for h in taken] == ["wh_1"]
    assert await store.renew_webhooks("n1", ["wh_1"], until=NOW + 200) == []
    assert await store.release_webhooks("n2") == 1
    again = await store.claim_webhooks("n1", now=NOW + 52, lease_time=30, limit=10)
    assert [h.id for h in again] == ["wh_1"]


async def test_a_batch_moves_the_cursor_only_when_done(store: Store) -> None:
    a = await tenant(store)
    ids = await events(store, a, 5)
    await store.create_webhook(hook(a))
    (h,) = await store.claim_webhooks("n1", now=NOW, lease_time=30, limit=1)
    assert not await store.begin_webhook_batch(h.id, "n2", batch_id="msg_1", last=ids[2], now=NOW)
    assert await store.begin_webhook_batch(h.id, "n1", batch_id="msg_1", last=ids[2], now=NOW)
    failed = delivery(h, "msg_1", ids[0], ids[2], "failed")
    assert await store.finish_webhook_batch(
        h.id, "n1", failed, done=False, from_cursor=0, next_attempt_at=NOW + 5
    )
    got = await store.get_webhook(a, h.id)
    assert got is not None
    assert (got.cursor, got.batch_id, got.batch_last, got.attempts) == (0, "msg_1", ids[2], 1)
    assert got.next_attempt_at == NOW + 5
    ok = delivery(h, "msg_1", ids[0], ids[2], "ok", attempts=2, updated_at=NOW + 6)
    assert not await store.finish_webhook_batch(
        h.id, "n2", ok, done=True, from_cursor=0, next_attempt_at=NOW
    )
    assert await store.finish_webhook_batch(
        h.id, "n1", ok, done=True, from_cursor=0, next_attempt_at=NOW + 6
    )
    got = await store.get_webhook(a, h.id)
    assert got is not None and (got.cursor, got.batch_id, got.attempts) == (ids[2], None, 0)
    logged = await store.webhook_deliveries(a, h.id)
    assert [(d.id, d.status, d.attempts, d.count) for d in logged] == [("msg_1", "ok", 2, 3)]
    assert logged[0].created_at == NOW  # the first attempt's time is kept
    assert await store.webhook_delivery_counts(h.id) == {"ok": 1}
    assert await store.webhook_deliveries(a, h.id, status="dead") == []
    assert await store.webhook_deliveries("other", h.id) == []


async def test_a_replay_wins_over_the_batch_in_flight(store: Store) -> None:
    a = await tenant(store)
    ids = await events(store, a, 4)
    await store.create_webhook(hook(a, cursor=ids[1]))
    (h,) = await store.claim_webhooks("n1", now=NOW, lease_time=30, limit=1)
    assert await store.begin_webhook_batch(h.id, "n1", batch_id="msg_2", last=ids[3], now=NOW)
    replayed = {"cursor": 0, "batch_id": None, "batch_last": None, "batch_started": None}
    assert await store.update_webhook(a, h.id, replayed, now=NOW) is not None
    ok = delivery(h, "msg_2", ids[2], ids[3], "ok")
    assert await store.finish_webhook_batch(
        h.id, "n1", ok, done=True, from_cursor=ids[1], next_attempt_at=NOW
    )
    got = await store.get_webhook(a, h.id)
    assert got is not None and got.cursor == 0  # the replay's cursor stands
    assert [d.id for d in await store.webhook_deliveries(a, h.id)] == ["msg_2"]


async def test_a_batch_chosen_without_begin_is_remembered_on_failure(store: Store) -> None:
    """A full batch is not written before its POST: its first failure remembers it."""
    a = await tenant(store)
    ids = await events(store, a, 3)
    await store.create_webhook(hook(a, batch_size=3))
    (h,) = await store.claim_webhooks("n1", now=NOW, lease_time=30, limit=1)
    failed = delivery(h, "msg_full", ids[0], ids[2], "failed", created_at=NOW - 7)
    assert await store.finish_webhook_batch(
        h.id, "n1", failed, done=False, from_cursor=0, next_attempt_at=NOW + 5
    )
    got = await store.get_webhook(a, h.id)
    assert got is not None
    assert (got.batch_id, got.batch_last, got.batch_started, got.attempts) == (
        "msg_full",
        ids[2],
        NOW - 7,
        1,
    )
    # Another batch cannot finish over it, nor one chosen from another cursor.
    other = delivery(h, "msg_other", ids[0], ids[2], "ok")
    assert await store.finish_webhook_batch(
        h.id, "n1", other, done=True, from_cursor=0, next_attempt_at=NOW
    )
    stale = delivery(h, "msg_full", ids[0], ids[2], "ok")
    assert await store.finish_webhook_batch(
        h.id, "n1", stale, done=True, from_cursor=ids[0], next_attempt_at=NOW
    )
    got = await store.get_webhook(a, h.id)
    assert got is not None and (got.cursor, got.batch_id) == (0, "msg_full")
    ok = delivery(h, "msg_full", ids[0], ids[2], "ok", attempts=2)
    assert await store.finish_webhook_batch(
        h.id, "n1", ok, done=True, from_cursor=0, next_attempt_at=NOW
    )
    got = await store.get_webhook(a, h.id)
    assert got is not None and (got.cursor, got.batch_id, got.batch_started) == (ids[2], None, None)


async def test_gone_disables_and_hands_back(store: Store) -> None:
    a = await tenant(store)
    ids = await events(store, a, 1)
    await store.create_webhook(hook(a))
    (h,) = await store.claim_webhooks("n1", now=NOW, lease_time=30, limit=1)
    assert await store.begin_webhook_batch(h.id, "n1", batch_id="m", last=ids[0], now=NOW)
    gone = delivery(h, "m", ids[0], ids[0], "failed", response_code=410)
    assert await store.finish_webhook_batch(
        h.id, "n1", gone, done=False, from_cursor=0, next_attempt_at=NOW, disable="410 Gone"
    )
    got = await store.get_webhook(a, h.id)
    assert got is not None
    assert (got.status, got.disabled_reason, got.lease_owner, got.cursor) == (
        "disabled",
        "410 Gone",
        None,
        0,
    )
    assert await store.claim_webhooks("n1", now=NOW + 1, lease_time=30, limit=1) == []


async def test_labels_and_latest_event(store: Store) -> None:
    a = await tenant(store)
    assert await store.latest_event_id(a) == 0
    m = message(a, "x@dest.test")
    await store.enqueue([m])
    labels = await store.message_labels([m.id, "nope"])
    assert labels == {m.id: (["t1"], {"k": "v"})}
    ids = await events(store, a, 2)
    assert await store.latest_event_id(a) == max(ids)
    assert await store.latest_event_id("other") == 0
