"""POST/GET/DELETE /v1/messages over real HTTP against a real node (delivery off)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from postline.runtime import Node
from support.node import add_tenant, api_client, running_node

NO_DELIVERY = "[delivery]\nenabled = false\n"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(tmp_path, NO_DELIVERY) as n:
        yield n


@pytest.fixture
async def client(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    key = await add_tenant(node)
    async with api_client(node, key) as c:
        yield c


MSG = {
    "from": "Ann Lee <ann@acme.test>",
    "to": ["bob@example.test", {"email": "carl@example.test", "name": "Carl"}],
    "bcc": ["audit@other.test"],
    "subject": "Your order",
    "text": "Hello Bob",
    "html": "<p>Hello Bob</p>",
    "headers": {"X-Campaign": "nov"},
    "tags": ["orders"],
    "metadata": {"order": 42},
}


async def test_send_and_read_back(client: httpx.AsyncClient, node: Node) -> None:
    r = await client.post("/v1/messages", json=MSG)
    assert r.status_code == 202, r.text
    body = r.json()
    assert [x["address"] for x in body["recipients"]] == [
        "bob@example.test",
        "carl@example.test",
        "audit@other.test",
    ]
    assert {x["status"] for x in body["recipients"]} == {"queued"}
    assert body["recipients"][1]["id"] == f"{body['id']}.1"

    got = (await client.get(f"/v1/messages/{body['id']}")).json()
    assert got["status"] == "queued"
    assert got["subject"] == "Your order"
    assert got["tags"] == ["orders"] and got["metadata"] == {"order": 42}
    assert got["message_id"] == body["message_id"]
    assert [e["type"] for e in got["recipients"][0]["events"]] == ["accepted"]

    # The stored message: headers rendered, Bcc kept out of the headers.
    view = await node.store.lease("example.test", now=9e9, limit=10, lease_time=1, owner="t")
    raw = view[0].body
    assert b"From: Ann Lee <ann@acme.test>\r\n" in raw
    assert b"To: bob@example.test, Carl <carl@example.test>\r\n" in raw
    assert b"X-Campaign: nov\r\n" in raw
    assert b"multipart/alternative" in raw
    assert b"audit@other.test" not in raw
    assert f"Message-ID: {body['message_id']}".encode() in raw


async def test_unicode_and_smtputf8(client: httpx.AsyncClient, node: Node) -> None:
    r = await client.post(
        "/v1/messages",
        json={
            "from": "Zoë <zoe@bücher.test>",
            "to": ["josé@exämple.test"],
            "subject": "Grüße ✓",
            "text": "Ünïcödé body " + "x" * 2000,
        },
    )
    assert r.status_code == 202, r.text
    assert r.json()["recipients"][0]["address"] == "josé@xn--exmple-cua.test"
    [leased] = await node.store.lease(
        "xn--exmple-cua.test", now=9e9, limit=1, lease_time=1, owner="t"
    )
    assert b"Content-Transfer-Encoding: quoted-printable" in leased.body
    assert all(len(line) <= 998 for line in leased.body.split(b"\r\n"))


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**MSG, "to": ["not-an-address"]}, "to[0].email"),
        ({**MSG, "subjet": "typo"}, "subjet"),
        ({**MSG, "subject": "hi\r\nBcc: victim@example.test"}, "subject"),
        ({**MSG, "headers": {"X-A": "v\r\nBcc: victim@example.test"}}, "headers"),
        ({**MSG, "headers": {"Bad Name": "v"}}, "headers"),
        ({**MSG, "headers": {"Subject": "override"}}, "headers"),
        ({**MSG, "from": "Evil\r\nBcc: x@example.test <a@acme.test>"}, "from"),
        ({**MSG, "to": [{"email": "b@example.test", "name": "B\nX-Evil: 1"}]}, "to[0].name"),
        ({"from": "a@acme.test", "to": ["b@example.test"]}, "body"),
        ({"from": "a@acme.test", "subject": "s", "text": "t"}, "body"),
        ({**MSG, "send_at": "2026-12-01T10:00:00"}, "send_at"),
        ({**MSG, "tags": ["has space"]}, "tags"),
        ({"raw": "!!notbase64", "to": ["b@example.test"]}, "raw"),
        (
            {"raw": base64.b64encode(b"Subject: x\r\n\r\na\x00b").decode(), "to": ["b@e.test"]},
            "raw",
        ),
        # An unpaired surrogate is valid JSON but no text: refused, never a crash.
        ({**MSG, "text": "a\ud800b"}, "body"),
        ({**MSG, "headers": {"X-A": "\udfff"}}, "body"),
    ],
)
async def test_invalid_input_is_explained(
    client: httpx.AsyncClient, node: Node, payload: dict[str, object], field: str
) -> None:
    # json.dumps escapes an unpaired surrogate as "\\ud800" (httpx's json= cannot send it).
    body = json.dumps(payload).encode()
    headers = {"content-type": "application/json"}
    r = await client.post("/v1/messages", content=body, headers=headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 422
    assert problem["type"].startswith("urn:postline:problem:")
    assert problem["detail"] and problem["fix"]
    assert any(e["field"].startswith(field) for e in problem["errors"]), problem
    assert await node.store.state_counts() == {}


async def test_too_many_recipients(client: httpx.AsyncClient, node: Node) -> None:
    r = await client.post(
        "/v1/messages", json={**MSG, "to": [f"u{i}@example.test" for i in range(1001)], "bcc": []}
    )
    assert r.status_code == 422
    assert "1000" in r.json()["detail"]


async def test_malformed_json_and_wrong_type(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/messages", content=b'{"from": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["type"] == "urn:postline:problem:malformed-json"
    r = await client.post("/v1/messages", json=[1, 2])
    assert r.status_code == 422


async def test_body_too_large(tmp_path: Path) -> None:
    async with running_node(tmp_path, NO_DELIVERY, api_extra="max_request_size = '100KB'") as node:
        key = await add_tenant(node)
        async with api_client(node, key) as c:
            r = await c.post("/v1/messages", json={**MSG, "text": "x" * 200_000})
            assert r.status_code == 413
            assert r.json()["status"] == 413 and r.json()["fix"]

            # Streamed without a Content-Length, the limit still holds.
            async def chunks():  # type: ignore[no-untyped-def]
                for _ in range(30):
                    yield b"x" * 10_000

            r = await c.post(
                "/v1/messages", content=chunks(), headers={"content-type": "application/json"}
            )
            assert r.status_code == 413
            assert await node.store.state_counts() == {}


async def test_auth_required(node: Node) -> None:
    async with api_client(node) as anon:
        r = await anon.post("/v1/messages", json=MSG)
        assert r.status_code == 401
        assert "Bearer" in r.json()["fix"]
        assert r.headers["www-authenticate"].startswith("Bearer")
    async with api_client(node, "pl_wrongkey") as bad:
        r = await bad.get("/v1/queues")
        assert r.status_code == 401
        assert "not valid" in r.json()["detail"]


async def test_tenants_are_isolated(node: Node) -> None:
    a = await add_tenant(node, "a")
    b = await add_tenant(node, "b")
    async with api_client(node, a) as ca, api_client(node, b) as cb:
        mid = (await ca.post("/v1/messages", json=MSG)).json()["id"]
        assert (await cb.get(f"/v1/messages/{mid}")).status_code == 404
        assert (await cb.delete(f"/v1/messages/{mid}")).status_code == 404
        assert (await cb.get("/v1/events")).json()["events"] == []
        assert (await cb.get("/v1/queues")).json()["queues"] == []
        assert (await ca.get(f"/v1/messages/{mid}")).status_code == 200


async def test_idempotency_sequential(client: httpx.AsyncClient, node: Node) -> None:
    h = {"Idempotency-Key": "order-42"}
    first = await client.post("/v1/messages", json=MSG, headers=h)
    again = await client.post("/v1/messages", json=MSG, headers=h)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert await node.store.state_counts() == {"queued": 3}
    conflict = await client.post("/v1/messages", json={**MSG, "subject": "other"}, headers=h)
    assert conflict.status_code == 409
    assert "different" in conflict.json()["detail"]
    assert await node.store.state_counts() == {"queued": 3}


async def test_idempotency_concurrent(client: httpx.AsyncClient, node: Node) -> None:
    h = {"Idempotency-Key": "burst"}
    replies = await asyncio.gather(
        *(client.post("/v1/messages", json=MSG, headers=h) for _ in range(25))
    )
    assert {r.status_code for r in replies} == {202}
    assert len({r.json()["id"] for r in replies}) == 1
    assert await node.store.state_counts() == {"queued": 3}


async def test_batch_answers_each_recipient_suppressed_or_queued(
    client: httpx.AsyncClient, node: Node
) -> None:
    added = await client.post(
        "/v1/suppressions",
        json={"suppressions": [{"address": "gone@example.test", "reason": "complaint"}]},
    )
    assert added.status_code in (200, 201), added.text
    items = [
        {"from": "a@acme.test", "to": ["ok@example.test", "GONE@example.test"], "text": "x"},
        {"from": "a@acme.test", "to": ["next@example.test"], "text": "y"},
    ]
    r = await client.post("/v1/messages/batch", json={"messages": items})
    assert r.status_code == 202, r.text
    first, second = r.json()["results"]
    assert first["recipients"] == [
        {"id": f"{first['id']}.0", "address": "ok@example.test", "status": "queued"},
        {
            "id": f"{first['id']}.1",
            "address": "GONE@example.test",
            "status": "suppressed",
            "reason": "complaint",
        },
    ]
    assert second["recipients"] == [
        {"id": f"{second['id']}.0", "address": "next@example.test", "status": "queued"}
    ]
    assert await node.store.state_counts() == {"queued": 2, "suppressed": 1}


async def test_batch(client: httpx.AsyncClient, node: Node) -> None:
    items = [
        {
            "from": "a@acme.test",
            "to": [f"u{i}@example.test"],
            "subject": f"hi {i}",
            "text": f"Dear {i}",
        }
        for i in range(5)
    ]
    items.insert(2, {"from": "a@acme.test", "to": ["broken"], "text": "x"})
    r = await client.post("/v1/messages/batch", json={"messages": items})
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (5, 1)
    bad = body["results"][2]
    assert bad["status"] == "rejected"
    assert bad["error"]["errors"][0]["field"].startswith("messages[2].to[0]")
    assert all(x["status"] == "accepted" for i, x in enumerate(body["results"]) if i != 2)
    assert await node.store.state_counts() == {"queued": 5}

    none_ok = await client.post("/v1/messages/batch", json={"messages": [{"to": []}]})
    assert none_ok.status_code == 422
    too_many = await client.post("/v1/messages/batch", json={"messages": [items[0]] * 1001})
    assert too_many.status_code == 422
    assert "1000" in too_many.json()["detail"]


async def test_raw_message(client: httpx.AsyncClient, node: Node) -> None:
    raw = (
        b"From: Ann <ann@acme.test>\nTo: bob@example.test\nBcc: hidden@example.test\n"
        b"Subject: raw\n\nbody line\n.dot line\n"
    )
    r = await client.post(
        "/v1/messages", json={"raw": base64.b64encode(raw).decode(), "to": ["bob@example.test"]}
    )
    assert r.status_code == 202, r.text
    [leased] = await node.store.lease("example.test", now=9e9, limit=1, lease_time=1, owner="t")
    assert leased.mail_from == "ann@acme.test"
    assert b"\r\nSubject: raw\r\n" in leased.body
    assert b"Bcc" not in leased.body
    assert b"Message-ID: <" in leased.body and b"Date: " in leased.body
    no_from = base64.b64encode(b"Subject: x\n\nbody\n").decode()
    r = await client.post("/v1/messages", json={"raw": no_from, "to": ["b@example.test"]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "from"


async def test_scheduled_and_cancel(client: httpx.AsyncClient, node: Node) -> None:
    r = await client.post("/v1/messages", json={**MSG, "send_at": "2099-01-01T00:00:00Z"})
    assert r.status_code == 422  # too far ahead
    r = await client.post("/v1/messages", json={**MSG, "send_at": "2030-01-01T00:00:00Z"})
    assert r.status_code == 422
    soon = await client.post("/v1/messages", json={**MSG, "send_at": _in(3600)})
    assert soon.status_code == 202, soon.text
    assert {x["status"] for x in soon.json()["recipients"]} == {"scheduled"}
    mid = soon.json()["id"]
    got = (await client.get(f"/v1/messages/{mid}")).json()
    assert got["status"] == "scheduled"
    cancelled = await client.delete(f"/v1/messages/{mid}")
    assert cancelled.status_code == 200
    assert cancelled.json()["cancelled"] == 3
    assert {x["status"] for x in cancelled.json()["recipients"]} == {"cancelled"}
    assert (await client.delete(f"/v1/messages/{mid}")).json()["cancelled"] == 0
    assert (await client.get("/v1/messages/NOPE")).status_code == 404


def _in(seconds: float) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
