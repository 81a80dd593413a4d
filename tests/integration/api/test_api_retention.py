"""Retention through the node: the cleaner deletes bodies, then messages and events, and
the API says what is gone."""

from __future__ import annotations

from pathlib import Path

from postline.model.ids import new_id
from support.node import add_tenant, api_client, running_node, wait_for

CONFIG = """
[delivery]
enabled = false
[retention]
bodies = "1s"
messages = "3s"
events = "3s"
interval = "200ms"
"""


async def test_bodies_then_messages_expire(tmp_path: Path) -> None:
    async with running_node(tmp_path, CONFIG) as node:
        key = await add_tenant(node)
        async with api_client(node, key) as client:
            r = await client.post(
                "/v1/messages",
                json={"from": "a@acme.test", "to": ["u@d.test"], "subject": "s", "text": "t"},
            )
            message_id = r.json()["id"]
            r = await client.delete(f"/v1/messages/{message_id}")  # final: cancelled
            assert r.status_code == 200, r.text

            async def body_gone() -> bool:
                got = (await client.get(f"/v1/messages/{message_id}")).json()
                return got.get("body_deleted_at") is not None

            await wait_for(body_gone, timeout=15)
            got = (await client.get(f"/v1/messages/{message_id}")).json()
            assert got["recipients"][0]["status"] == "cancelled"

            async def expired() -> bool:
                r = await client.get(f"/v1/messages/{message_id}")
                return r.status_code == 404 and r.json()["type"].endswith("expired")

            await wait_for(expired, timeout=15)
            problem = (await client.get(f"/v1/messages/{message_id}")).json()
            assert "retention" in problem["detail"] and problem["fix"]
            assert (await client.get("/v1/events")).json()["events"] == []
            # An id that never existed is still "not found", not "expired".
            r = await client.get(f"/v1/messages/{new_id()}")
            assert r.status_code == 404 and r.json()["type"].endswith("not-found")
        assert node.cleaner is not None and node.cleaner.deleted["messages"] == 1
        metrics = await node.metrics.render()
        assert b'postline_retention_deleted_total{kind="messages"} 1.0' in metrics
