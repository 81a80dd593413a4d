"""POST/GET /u/{token} (RFC 8058 one-click unsubscribe) over real HTTP against a real node
(delivery off, no bounce domain: the links are signed with data_dir/verp.key)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from postline.feedback import unsubscribe
from postline.feedback.keys import verp_secrets
from postline.runtime import Node
from postline.store.base import Suppression
from support.node import add_tenant, api_client, running_node

NO_DELIVERY = "[delivery]\nenabled = false\n"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(tmp_path, NO_DELIVERY) as n:
        yield n


@pytest.fixture
async def client(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    key = await add_tenant(node, "acme")
    async with api_client(node, key) as c:
        yield c


@pytest.fixture
async def anonymous(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(node) as c:
        yield c


async def _send(client: httpx.AsyncClient, *to: str) -> str:
    r = await client.post(
        "/v1/messages",
        json={"from": "news@shop.test", "to": list(to), "subject": "News", "text": "hi"},
    )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _token(node: Node, mid: str, idx: int = 0) -> str:
    return unsubscribe.encode(mid, idx, verp_secrets(node.config)[0])


async def _events(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/v1/events", params={"type": "unsubscribed"})
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


async def _suppression(node: Node, tenant: str, address: str) -> Suppression | None:
    t = await node.store.get_tenant(name=tenant)
    assert t is not None
    return (await node.store.suppressed(t.id, [address], now=time.time())).get(address)


async def test_one_click_post_suppresses_records_once_and_needs_no_key(
    node: Node, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    mid = await _send(client, "ann@example.test", "Bob@Example.test")
    token = _token(node, mid, 1)

    r = await anonymous.post(f"/u/{token}", data=ONE_CLICK)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"status": "unsubscribed"}
    assert "set-cookie" not in r.headers

    entry = await _suppression(node, "acme", "bob@example.test")
    assert entry is not None and entry.reason == "unsubscribe"
    assert entry.source == "one-click" and entry.message_id == mid and entry.expires_at is None
    assert await _suppression(node, "acme", "ann@example.test") is None
    (event,) = await _events(client)
    assert event["type"] == "unsubscribed" and event["message_id"] == mid
    assert event["recipient_id"] == f"{mid}.1" and event["recipient"] == "Bob@example.test"
    assert event["data"]["source"] == "one-click" and event["data"]["suppressed"] is True

    # Again, with the body, empty, or multipart: 200 each time and still one event.
    again = await anonymous.post(f"/u/{token}", data=ONE_CLICK)
    assert again.status_code == 200 and again.json() == {"status": "unsubscribed"}
    assert (await anonymous.post(f"/u/{token}")).status_code == 200
    multipart = await anonymous.post(f"/u/{token}", files={"List-Unsubscribe": (None, "One-Click")})
    assert multipart.status_code == 200
    assert len(await _events(client)) == 1

    # The next message to the address is not sent.
    r = await client.post(
        "/v1/messages",
        json={"from": "news@shop.test", "to": ["bob@example.test"], "subject": "x", "text": "x"},
    )
    (rcpt,) = r.json()["recipients"]
    assert rcpt["status"] == "suppressed" and rcpt["reason"] == "unsubscribe"


async def test_get_shows_a_form_and_changes_nothing(
    node: Node, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    mid = await _send(client, "ann@example.test")
    token = _token(node, mid)
    for _ in range(3):
        r = await anonymous.get(f"/u/{token}")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert '<form method="post">' in r.text
        assert 'name="List-Unsubscribe" value="One-Click"' in r.text
        assert r.headers["cache-control"] == "no-store"
        assert "set-cookie" not in r.headers
    assert await _suppression(node, "acme", "ann@example.test") is None
    assert await _events(client) == []

    # The page's button: a browser form POST gets an HTML answer.
    r = await anonymous.post(f"/u/{token}", data=ONE_CLICK, headers={"Accept": "text/html"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "Unsubscribed" in r.text
    assert len(await _events(client)) == 1


async def test_forged_tokens_are_404_and_change_nothing(
    node: Node, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    mid = await _send(client, "ann@example.test")
    token = _token(node, mid)
    forged = [
        token[:-1] + ("0" if token[-1] != "0" else "1"),
        unsubscribe.encode(mid, 0, b"another-secret"),
        unsubscribe.encode(mid, 1, verp_secrets(node.config)[0]),  # no such recipient
        "not-a-token",
        "u-" + token,
    ]
    for bad in forged:
        r = await anonymous.post(f"/u/{bad}", data=ONE_CLICK)
        assert r.status_code == 404, bad
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == "urn:postline:problem:unsubscribe-link"
        page = await anonymous.get(f"/u/{bad}")
        if bad != forged[2]:  # a signed token is shown its page; POST finds no recipient
            assert page.status_code == 404 and page.headers["content-type"].startswith("text/")
    assert await _suppression(node, "acme", "ann@example.test") is None
    assert await _events(client) == []


async def test_a_tenants_unsubscribe_is_its_own(
    node: Node, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    other_key = await add_tenant(node, "bravo")
    async with api_client(node, other_key) as other:
        mid = await _send(client, "ann@example.test")
        other_mid = await _send(other, "ann@example.test")
        r = await anonymous.post(f"/u/{_token(node, mid)}", data=ONE_CLICK)
        assert r.status_code == 200
        assert await _events(other) == []
        assert await _suppression(node, "bravo", "ann@example.test") is None
        assert len(await _events(client)) == 1
        # bravo's own link suppresses the address for bravo, with bravo's event.
        r = await anonymous.post(f"/u/{_token(node, other_mid)}", data=ONE_CLICK)
        assert r.status_code == 200
        (event,) = await _events(other)
        assert event["message_id"] == other_mid
        assert len(await _events(client)) == 1


async def test_existing_suppressions_keep_a_complaint_and_replace_a_bounce(
    node: Node, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    tenant = await node.store.get_tenant(name="acme")
    assert tenant is not None
    mid = await _send(client, "ann@example.test", "bob@example.test")
    now = time.time()
    await node.store.add_suppressions(
        [
            Suppression(tenant.id, "ann@example.test", "complaint", now, source="feedback"),
            Suppression(tenant.id, "bob@example.test", "hard_bounce", now, source="bounce"),
        ]
    )
    for idx in (0, 1):
        r = await anonymous.post(f"/u/{_token(node, mid, idx)}", data=ONE_CLICK)
        assert r.status_code == 200
    ann = await _suppression(node, "acme", "ann@example.test")
    bob = await _suppression(node, "acme", "bob@example.test")
    assert ann is not None and ann.reason == "complaint"
    assert bob is not None and bob.reason == "unsubscribe"
    events = {e["recipient"]: e["data"]["suppressed"] for e in await _events(client)}
    assert events == {"ann@example.test": False, "bob@example.test": True}


async def test_public_url_defaults_to_the_api_address(node: Node) -> None:
    assert node.api_address is not None
    host, port = node.api_address
    assert node.public_url == f"http://{host}:{port}"
