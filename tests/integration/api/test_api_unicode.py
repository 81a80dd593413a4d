"""Text that JSON can carry but no encoding can write (an unpaired UTF-16 surrogate,
"\\ud800") is refused with a problem document on every endpoint that takes JSON or a
path parameter; it never reaches the store or the renderer as a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from support.node import add_tenant, api_client, running_node

MSG = {"from": "ann@acme.test", "to": ["bob@example.test"], "subject": "s", "text": "t"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running_node(tmp_path, "[delivery]\nenabled = false\n") as node:
        key = await add_tenant(node)
        async with api_client(node, key) as c:
            yield c


async def _post(client: httpx.AsyncClient, path: str, payload: object) -> httpx.Response:
    body = json.dumps(payload).encode()  # escapes the surrogate as \\ud800
    return await client.post(path, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/messages", {**MSG, "text": "a\ud800"}),
        ("/v1/messages", {**MSG, "subject": "\udc00"}),
        ("/v1/messages", {**MSG, "metadata": {"k\ud800": "v"}}),
        ("/v1/messages/check", {**MSG, "html": "<p>\ud800</p>"}),
        ("/v1/suppressions", {"address": "a\ud800@example.test"}),
        ("/v1/suppressions", {"entries": [{"address": "a@example.test", "note": "\ud800"}]}),
        ("/v1/domains", {"domain": "ex\ud800ample.test"}),
    ],
)
async def test_unpaired_surrogates_are_refused(
    client: httpx.AsyncClient, path: str, payload: object
) -> None:
    r = await _post(client, path, payload)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"


async def test_one_bad_item_does_not_sink_a_batch(client: httpx.AsyncClient) -> None:
    items = [MSG, {**MSG, "text": "\ud800"}]
    r = await _post(client, "/v1/messages/batch", {"messages": items})
    assert r.status_code == 202, r.text
    statuses = [item["status"] for item in r.json()["results"]]
    assert statuses == ["accepted", "rejected"]


async def test_a_surrogate_in_utf8_bytes_is_refused_in_a_batch(client: httpx.AsyncClient) -> None:
    # Not escaped: the three bytes UTF-8 would give U+D800, which JSON decoding lets through.
    good = json.dumps(MSG).encode()
    bad = json.dumps({**MSG, "text": "a-X-b"}).encode().replace(b"-X-", b"\xed\xa0\x80")
    body = b'{"messages": [' + good + b", " + bad + b"]}"
    r = await client.post(
        "/v1/messages/batch", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 202, r.text
    results = r.json()["results"]
    assert [item["status"] for item in results] == ["accepted", "rejected"]
    assert "surrogate" in results[1]["error"]["errors"][0]["message"]
