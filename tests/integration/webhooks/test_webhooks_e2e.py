"""Webhooks end to end: a node, its HTTP API, and a receiver over real sockets that checks
every delivery with the `standardwebhooks` package as an application would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from postline.runtime import Node
from postline.sim.receiver import Received, WebhookReceiver
from support.node import add_tenant, api_client, running_node, wait_for

CONFIG = """
[delivery]
enabled = false
[webhooks]
allow_http = true
allow_networks = ["127.0.0.0/8"]
timeout = "1s"
poll_interval = "0.05s"
retry_base = "0.1s"
retry_max = "0.5s"
"""


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(tmp_path, CONFIG) as n:
        yield n


@pytest.fixture
async def client(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    key = await add_tenant(node)
    async with api_client(node, key) as c:
        yield c


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = WebhookReceiver()
    await r.start()
    yield r
    await r.close()


async def send(client: httpx.AsyncClient, n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        r = await client.post(
            "/v1/messages",
            json={
                "from": "a@acme.test",
                "to": [f"u{i}@d.test"],
                "subject": "s",
                "text": "t",
                "tags": ["spring"],
                "metadata": {"order": str(i)},
            },
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


async def all_events(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/events", params=params)).json()
        out += page["events"]
        if not page["events"]:
            return out
        cursor = page["next_cursor"]


def delivered_ids(received: list[Received]) -> list[str]:
    return [e["id"] for r in received if 200 <= r.status < 300 for e in r.events()]


async def test_events_arrive_signed_in_order_through_failures_and_a_timeout(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    # Two refusals, then a reply slower than the 1 s timeout, then success.
    receiver.script = lambda n: (500, 0.0) if n < 2 else (200, 2.0) if n == 2 else (200, 0.0)
    r = await client.post("/v1/webhooks", json={"url": receiver.url, "batch_size": 5})
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["secret"]
    assert secret.startswith("whsec_") and created["events"] == []
    listed = (await client.get("/v1/webhooks")).json()["webhooks"]
    assert [w["id"] for w in listed] == [created["id"]] and "secret" not in listed[0]

    await send(client, 12)
    expected = await all_events(client)
    assert len(expected) == 12
    await wait_for(lambda: len(delivered_ids(receiver.received)) >= 12, timeout=30)

    verifier = Verifier(secret)
    for got in receiver.received:
        verifier.verify(got.body, got.headers)  # raises on a bad signature
    # The first batch was tried four times under one id; nothing later overtook it.
    first_id = receiver.received[0].headers["webhook-id"]
    assert [g.headers["webhook-id"] for g in receiver.received[:4]] == [first_id] * 4
    assert [g.status for g in receiver.received[:4]][:2] == [500, 500]
    accepted = receiver.accepted()
    assert all(1 <= len(g.events()) <= 5 for g in accepted)
    assert delivered_ids(receiver.received) == [e["id"] for e in expected]
    # Each object is the one GET /v1/events shows, plus the message's tags and metadata.
    by_id = {e["id"]: e for e in expected}
    for got in accepted:
        for obj in got.events():
            assert obj["tags"] == ["spring"]
            assert obj["metadata"]["order"].isdigit()
            plain = {k: v for k, v in obj.items() if k not in ("tags", "metadata")}
            assert plain == by_id[obj["id"]]

    hook_id = created["id"]

    async def caught_up() -> dict[str, Any] | None:
        state: dict[str, Any] = (await client.get(f"/v1/webhooks/{hook_id}")).json()
        return state if state["last_event_id"] == expected[-1]["id"] else None

    state = await wait_for(caught_up)  # the last 2xx is recorded just after it arrives
    assert state["lag_seconds"] is None and state["oldest_pending_event_id"] is None
    assert state["deliveries"]["ok"] == len(accepted)
    log = (await client.get(f"/v1/webhooks/{hook_id}/deliveries")).json()["deliveries"]
    first = next(d for d in log if d["id"] == first_id)
    # (the batch holds what existed when it was first tried: up to batch_size events)
    first_events = len(receiver.received[0].events())
    assert first["status"] == "ok" and first["attempts"] == 4 and first["events"] == first_events
    assert first["response_code"] == 200
    assert (await client.get(f"/v1/webhooks/{hook_id}/deliveries?status=dead")).json()[
        "deliveries"
    ] == []

    # 410 Gone disables the endpoint; nothing more is sent to it.
    receiver.script = lambda n: (410, 0.0)
    await send(client, 1, start=100)
    await wait_for(
        lambda: _status(client, hook_id, "disabled"),
        timeout=15,
    )
    state = (await client.get(f"/v1/webhooks/{hook_id}")).json()
    assert "410" in state["disabled_reason"]
    tries = len(receiver.received)
    await asyncio.sleep(0.5)
    assert len(receiver.received) == tries
    # Enabled again, it resumes with the event it could not deliver.
    receiver.script = lambda n: (200, 0.0)
    r = await client.patch(f"/v1/webhooks/{hook_id}", json={"enabled": True})
    assert r.status_code == 200 and r.json()["status"] == "active"
    await wait_for(lambda: len(delivered_ids(receiver.received)) >= 13, timeout=15)


async def _status(client: httpx.AsyncClient, hook_id: str, status: str) -> bool:
    return bool((await client.get(f"/v1/webhooks/{hook_id}")).json()["status"] == status)


async def test_filters_rotation_replay_and_test_event(
    client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    r = await client.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["accepted"], "batch_size": 100}
    )
    hook = r.json()
    old = hook["secret"]
    await send(client, 3)
    await wait_for(lambda: len(delivered_ids(receiver.received)) >= 3)

    r = await client.post(f"/v1/webhooks/{hook['id']}/rotate-secret")
    assert r.status_code == 200
    new = r.json()["secret"]
    assert new != old and r.json()["old_secret_expires_at"]
    await send(client, 2, start=3)
    await wait_for(lambda: len(delivered_ids(receiver.received)) >= 5)
    last = receiver.received[-1]
    assert len(last.headers["webhook-signature"].split()) == 2
    Verifier(new).verify(last.body, last.headers)
    Verifier(old).verify(last.body, last.headers)

    sent = delivered_ids(receiver.received)
    r = await client.post(f"/v1/webhooks/{hook['id']}/replay", json={"since": sent[1]})
    assert r.status_code == 202 and r.json()["from_event_id"] == sent[1]
    await wait_for(lambda: len(delivered_ids(receiver.received)) >= 9)
    assert delivered_ids(receiver.received)[5:] == sent[1:]

    r = await client.post(f"/v1/webhooks/{hook['id']}/test")
    assert r.status_code == 200 and r.json()["ok"] is True, r.text
    test = receiver.received[-1]
    assert [e["type"] for e in test.events()] == ["test"]
    Verifier(new).verify(test.body, test.headers)


async def test_refusals_are_problems(client: httpx.AsyncClient) -> None:
    cases = [
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ({"url": "https://10.1.2.3/hooks"}, "url"),
        ({"url": "https://[::1]/hooks"}, "url"),
        ({"url": "ftp://hooks.example/"}, "url"),
        ({"url": "https://user:pw@hooks.example/"}, "url"),
        ({"url": "https://hooks.example/", "events": ["nope"]}, "events"),
        ({"url": "https://hooks.example/", "batch_size": 0}, "batch_size"),
    ]
    for body, field in cases:
        r = await client.post("/v1/webhooks", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        assert problem["errors"][0]["field"] == field and problem["fix"], problem
    assert (await client.get("/v1/webhooks/wh_nope")).status_code == 404
    assert (await client.delete("/v1/webhooks/wh_nope")).status_code == 404


async def test_tenants_see_only_their_endpoints(
    node: Node, client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    hook = (await client.post("/v1/webhooks", json={"url": receiver.url})).json()
    other_key = await add_tenant(node, "other")
    async with api_client(node, other_key) as other:
        assert (await other.get("/v1/webhooks")).json()["webhooks"] == []
        assert (await other.get(f"/v1/webhooks/{hook['id']}")).status_code == 404
        assert (
            await other.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False})
        ).status_code == 404
        assert (
            await other.post(f"/v1/webhooks/{hook['id']}/replay", json={"since": "1"})
        ).status_code == 404
        assert (await other.delete(f"/v1/webhooks/{hook['id']}")).status_code == 404
        await send(other, 2)
    await send(client, 1)
    await wait_for(lambda: len(delivered_ids(receiver.received)) >= 1)
    await asyncio.sleep(0.3)
    assert len(delivered_ids(receiver.received)) == 1  # the other tenant's events stay its own
    assert (await client.delete(f"/v1/webhooks/{hook['id']}")).status_code == 204
