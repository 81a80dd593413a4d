"""Requests a newcomer gets wrong are answered with what to change: a body sent without
a JSON Content-Type (curl's -d), a query parameter the route does not read, a message
bigger than the node's limit."""

from __future__ import annotations

from pathlib import Path

from support.node import add_tenant, api_client, running_node

MESSAGE = b'{"from": "a@shop.test", "to": "b@x.test", "subject": "s", "text": "t"}'


async def test_request_errors_say_what_to_change(tmp_path: Path) -> None:
    async with running_node(
        tmp_path, "[delivery]\nenabled = false\n", submission_extra="max_message_size = '1MiB'"
    ) as node:
        key = await add_tenant(node)
        async with api_client(node, key) as api:
            # curl -d sends application/x-www-form-urlencoded.
            form = {"content-type": "application/x-www-form-urlencoded"}
            r = await api.post("/v1/messages", content=MESSAGE, headers=form)
            assert r.status_code == 415, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert "Content-Type: application/json" in r.json()["fix"]
            r = await api.post(
                "/v1/messages/batch", content=b"{}", headers={"content-type": "text/plain"}
            )
            assert r.status_code == 415, r.text
            # The same bytes as JSON are accepted; an invalid JSON body stays a 422.
            json_type = {"content-type": "application/json; charset=utf-8"}
            r = await api.post("/v1/messages", content=MESSAGE, headers=json_type)
            assert r.status_code == 202, r.text
            r = await api.post("/v1/messages", json={"to": "b@x.test"})
            assert r.status_code == 422, r.text

            r = await api.get("/v1/events", params={"after": "x", "limit": 5})
            assert r.status_code == 400, r.text
            body = r.json()
            assert "'after'" in body["detail"] and "cursor" in body["detail"]
            assert body["errors"] == [
                {"field": "query.after", "message": "unknown query parameter"}
            ]
            r = await api.get("/v1/events", params={"limit": 5})
            assert r.status_code == 200, r.text

            r = await api.post(
                "/v1/messages",
                json={
                    "from": "a@shop.test",
                    "to": "b@x.test",
                    "subject": "s",
                    "html": "x" * 2_000_000,
                },
            )
            assert r.status_code == 422, r.text
            detail = r.json()["detail"]
            assert "[submission] max_message_size" in detail and "1,048,576" in detail
            assert "'html'" not in r.text
