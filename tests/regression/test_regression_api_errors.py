"""Every API error is problem JSON, and every 2xx body is valid JSON.

Covers: event cursors that ``str.isdigit()`` accepts but ``int()`` refuses, or that
overflow the store's integer; non-finite numbers in ``metadata``; a batch whose every item
is invalid (a problem document with the per-item ``results``); the ``Allow`` header of 405.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from support.node import add_tenant, api_client, running_node


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running_node(tmp_path, "[delivery]\nenabled = false\n") as node:
        key = await add_tenant(node)
        async with api_client(node, key) as client:
            yield client


def _strict(text: str) -> object:
    def refuse(token: str) -> object:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("cursor", ["\u00b2", "99999999999999999999999"])
async def test_bad_cursor_is_a_problem_not_a_500(api: httpx.AsyncClient, cursor: str) -> None:
    r = await api.get("/v1/events", params={"cursor": cursor})
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"


async def test_metadata_nan_is_refused_or_served_as_json(api: httpx.AsyncClient) -> None:
    body = (
        '{"from": "a@acme.test", "to": ["b@example.test"], "text": "hi", '
        '"metadata": {"score": NaN}}'
    )
    r = await api.post("/v1/messages", content=body, headers={"content-type": "application/json"})
    if r.status_code == 422:
        return  # refusing non-JSON numbers is fine
    assert r.status_code == 202, r.text
    got = await api.get(f"/v1/messages/{r.json()['id']}")
    assert got.status_code == 200
    _strict(got.text)  # the body must be JSON (RFC 8259 has no NaN)


async def test_405_names_the_allowed_methods(api: httpx.AsyncClient) -> None:
    r = await api.put("/v1/messages")
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/problem+json"
    assert "POST" in r.headers.get("allow", ""), dict(r.headers)


async def test_all_rejected_batch_is_problem_json(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/v1/messages/batch", json={"messages": [{"from": "bad", "to": ["x@y.test"], "text": "a"}]}
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json", r.headers["content-type"]
    assert {"type", "title", "status", "detail"} <= set(r.json())
