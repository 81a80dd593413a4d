"""/v1/events, /v1/queues, health, metrics and the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from postline.runtime import Node
from support.node import add_tenant, api_client, running_node

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(tmp_path, "[delivery]\nenabled = false\n") as n:
        yield n


@pytest.fixture
async def client(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    key = await add_tenant(node)
    async with api_client(node, key) as c:
        yield c


def msg(to: str) -> dict[str, object]:
    return {"from": "a@acme.test", "to": [to], "subject": "s", "text": "t"}


async def test_events_paging_and_filters(client: httpx.AsyncClient) -> None:
    ids = []
    for i in range(7):
        r = await client.post("/v1/messages", json=msg(f"u{i}@d{i % 2}.test"))
        ids.append(r.json()["id"])
    seen = []
    cursor = None
    for _ in range(10):
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/events", params=params)).json()
        if not page["events"]:
            break
        seen.extend(e["message_id"] for e in page["events"])
        cursor = page["next_cursor"]
    assert seen == ids
    by_msg = (await client.get("/v1/events", params={"message_id": ids[3]})).json()["events"]
    assert [e["recipient"] for e in by_msg] == ["u3@d1.test"]
    assert by_msg[0]["recipient_id"] == f"{ids[3]}.0"
    by_rcpt = (await client.get("/v1/events", params={"recipient": "U4@D0.test"})).json()["events"]
    assert [e["message_id"] for e in by_rcpt] == [ids[4]]
    typed = await client.get("/v1/events", params={"type": "accepted,delivered"})
    assert len(typed.json()["events"]) == 7
    bad = await client.get("/v1/events", params={"type": "exploded"})
    assert bad.status_code == 422 and "accepted" in bad.json()["fix"]
    assert (await client.get("/v1/events", params={"cursor": "xyz"})).status_code == 422
    future = await client.get("/v1/events", params={"since": "2099-01-01T00:00:00Z"})
    assert future.json()["events"] == []
    naive = await client.get("/v1/events", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422


async def test_queues_pause_resume(client: httpx.AsyncClient, node: Node) -> None:
    for i in range(3):
        await client.post("/v1/messages", json=msg(f"u{i}@slow.test"))
    await client.post("/v1/messages", json=msg("x@fast.test"))
    queues = {q["domain"]: q for q in (await client.get("/v1/queues")).json()["queues"]}
    assert queues["slow.test"]["depth"] == 3 and queues["fast.test"]["depth"] == 1
    assert queues["slow.test"]["paused"] is False
    assert queues["slow.test"]["oldest_at"].endswith("Z")
    paused = await client.post("/v1/queues/SLOW.test/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert await node.store.lease("slow.test", now=9e9, limit=10, lease_time=1, owner="t") == []
    resumed = await client.post("/v1/queues/slow.test/resume")
    assert resumed.json()["paused"] is False
    assert len(await node.store.lease("slow.test", now=9e9, limit=10, lease_time=1, owner="t")) == 3
    assert (await client.post("/v1/queues/not a domain/pause")).status_code == 422


async def test_health_metrics_openapi(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    await client.post("/v1/messages", json=msg("u@m.test"))
    metrics = (await client.get("/metrics")).text
    assert 'postline_ingested_messages_total{source="api"} 1.0' in metrics
    assert 'postline_queue_depth{domain="m.test"} 1.0' in metrics
    [age] = [ln for ln in metrics.splitlines() if ln.startswith("postline_queue_oldest_seconds{")]
    assert age.startswith('postline_queue_oldest_seconds{domain="m.test"} ')
    assert 0 <= float(age.rsplit(" ", 1)[1]) < 60
    served = (await client.get("/openapi.json")).json()
    checked_in = json.loads((ROOT / "docs/reference/openapi.json").read_text())
    assert served == checked_in, "run `make openapi` and commit docs/reference/openapi.json"
    unknown = await client.get("/v2/nothing")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


async def test_metrics_token(tmp_path: Path) -> None:
    async with (
        running_node(
            tmp_path, "[delivery]\nenabled = false\n", api_extra='metrics_token = "s3cret"'
        ) as node,
        api_client(node) as anon,
    ):
        r = await anon.get("/metrics")
        assert r.status_code == 401
        assert r.json()["fix"]
        ok = await anon.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert "postline_recipients" in ok.text


async def test_queues_are_paged(client: httpx.AsyncClient) -> None:
    for i in range(5):
        await client.post("/v1/messages", json=msg(f"u@q{i}.test"))
    first = (await client.get("/v1/queues", params={"limit": 3})).json()
    assert [q["domain"] for q in first["queues"]] == ["q0.test", "q1.test", "q2.test"]
    rest = (
        await client.get("/v1/queues", params={"limit": 3, "cursor": first["next_cursor"]})
    ).json()
    assert [q["domain"] for q in rest["queues"]] == ["q3.test", "q4.test"]
    assert rest["next_cursor"] is None
