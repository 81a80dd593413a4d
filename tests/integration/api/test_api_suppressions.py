"""GET/POST/DELETE /v1/suppressions over real HTTP against a real node (delivery off)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from postline.runtime import Node
from postline.store.base import Suppression
from support.node import add_tenant, api_client, running_node

NO_DELIVERY = "[delivery]\nenabled = false\n"


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
async def other(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    key = await add_tenant(node, "bravo")
    async with api_client(node, key) as c:
        yield c


async def _all(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """Every entry, page by page."""
    out: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        query = dict(params)
        if cursor:
            query["cursor"] = cursor
        r = await client.get("/v1/suppressions", params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        out.extend(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("paging did not end")


async def test_add_list_lookup_delete_round_trip(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/suppressions",
        json={
            "suppressions": [
                {"address": " Ann@Example.TEST "},
                {
                    "address": "bob@bücher.test",
                    "reason": "unsubscribe",
                    "expires_at": "2099-01-01T00:00:00Z",
                    "detail": "asked by phone",
                },
                {"address": "carl@example.test", "reason": "complaint", "expires_at": None},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"added": 3}

    listed = (await client.get("/v1/suppressions")).json()
    assert listed["next_cursor"] is None
    by_address = {e["address"]: e for e in listed["data"]}
    assert [e["address"] for e in listed["data"]] == [
        "ann@example.test",
        "bob@xn--bcher-kva.test",
        "carl@example.test",
    ]
    ann = by_address["ann@example.test"]
    assert ann["reason"] == "manual" and ann["source"] == "api"
    assert ann["expires_at"] is None and ann["detail"] == "" and ann["message_id"] is None
    assert ann["created_at"].endswith("Z") and ann["created_at"][:2] == "20"
    bob = by_address["bob@xn--bcher-kva.test"]
    assert bob["expires_at"] == "2099-01-01T00:00:00.000Z"
    assert (bob["reason"], bob["detail"]) == ("unsubscribe", "asked by phone")

    # One address, case-insensitively and with the domain in either form.
    one = (await client.get("/v1/suppressions", params={"address": "BOB@Bücher.test"})).json()
    assert [e["address"] for e in one["data"]] == ["bob@xn--bcher-kva.test"]
    assert one["next_cursor"] is None
    none = await client.get("/v1/suppressions", params={"address": "zed@example.test"})
    assert none.json() == {"data": [], "next_cursor": None}

    # Adding an address again replaces its entry.
    again = await client.post(
        "/v1/suppressions",
        json={"suppressions": [{"address": "ann@example.test", "reason": "hard_bounce"}]},
    )
    assert again.json() == {"added": 1}
    ann2 = (await client.get("/v1/suppressions", params={"address": "ann@example.test"})).json()
    assert ann2["data"][0]["reason"] == "hard_bounce"

    gone = await client.delete("/v1/suppressions/" + quote("ANN@example.test", safe=""))
    assert gone.status_code == 204 and gone.content == b""
    unicode = await client.delete("/v1/suppressions/" + quote("bob@bücher.test", safe=""))
    assert unicode.status_code == 204
    left = await _all(client)
    assert [e["address"] for e in left] == ["carl@example.test"]

    missing = await client.delete("/v1/suppressions/ann%40example.test")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    problem = missing.json()
    assert problem["type"] == "urn:postline:problem:not-found"
    assert "ann@example.test" in problem["detail"] and problem["fix"]


async def test_paging_over_more_than_a_page(client: httpx.AsyncClient) -> None:
    addresses = [f"user{i:03d}@page.test" for i in range(250)]
    r = await client.post(
        "/v1/suppressions", json={"suppressions": [{"address": a} for a in addresses]}
    )
    assert r.json() == {"added": 250}
    first = (await client.get("/v1/suppressions")).json()
    assert len(first["data"]) == 100 and first["next_cursor"]
    pages = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 60}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/suppressions", params=params)).json()
        pages.append(len(page["data"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [60, 60, 60, 60, 10]
    assert [e["address"] for e in await _all(client, limit=60)] == addresses
    # A page exactly as long as what is left ends the listing.
    exact = (await client.get("/v1/suppressions", params={"limit": 250})).json()
    assert len(exact["data"]) == 250 and exact["next_cursor"] is None

    for bad in ({"limit": 0}, {"limit": 1001}, {"cursor": "!!not-a-cursor!!"}):
        r = await client.get("/v1/suppressions", params=bad)
        assert r.status_code == 422, bad
        assert r.headers["content-type"] == "application/problem+json"


async def test_filter_by_reason(client: httpx.AsyncClient, node: Node) -> None:
    entries = [
        {"address": "a@r.test", "reason": "complaint"},
        {"address": "b@r.test", "reason": "manual"},
        {"address": "c@r.test", "reason": "complaint"},
        {"address": "d@r.test", "reason": "unsubscribe"},
        {"address": "e@r.test", "reason": "hard_bounce"},
    ]
    assert (
        await client.post("/v1/suppressions", json={"suppressions": entries})
    ).status_code == 200
    # Entries postline adds itself (soft bounces) are listed and filtered like the others.
    tenant = await node.store.get_tenant(name="acme")
    assert tenant is not None
    now = time.time()
    await node.store.add_suppressions(
        [Suppression(tenant.id, "f@r.test", "soft_bounce", now, now + 3600, "bounce", "5 in a row")]
    )
    complaints = await _all(client, reason="complaint", limit=1)
    assert [e["address"] for e in complaints] == ["a@r.test", "c@r.test"]
    soft = await _all(client, reason="soft_bounce")
    assert [(e["address"], e["source"]) for e in soft] == [("f@r.test", "bounce")]
    assert soft[0]["expires_at"] is not None
    looked_up = await client.get(
        "/v1/suppressions", params={"address": "a@r.test", "reason": "manual"}
    )
    assert looked_up.json()["data"] == []
    bad = await client.get("/v1/suppressions", params={"reason": "bored"})
    assert bad.status_code == 422
    assert "hard_bounce" in bad.json()["fix"]


async def test_expired_entries_are_not_listed(client: httpx.AsyncClient, node: Node) -> None:
    tenant = await node.store.get_tenant(name="acme")
    assert tenant is not None
    now = time.time()
    await node.store.add_suppressions(
        [
            Suppression(tenant.id, "old@x.test", "manual", now - 100, now - 1),
            Suppression(tenant.id, "new@x.test", "manual", now, now + 100),
        ]
    )
    assert [e["address"] for e in await _all(client)] == ["new@x.test"]


async def test_invalid_entries_reject_the_whole_request(client: httpx.AsyncClient) -> None:
    body = {
        "suppressions": [
            {"address": "good@example.test"},
            {"address": "bob@"},
            {"address": "Ann <ann@example.test>"},
            {"address": "c@example.test", "reason": "soft_bounce"},
            {"address": "d@example.test", "expires_at": "2020-01-01T00:00:00Z"},
            {"address": "e@example.test", "expires_at": "2099-01-01T00:00:00"},
            {"address": "f@example.test", "colour": "red"},
            {"reason": "manual"},
            "g@example.test",
            {"address": "h@example.test", "detail": "x" * 1001},
        ]
    }
    r = await client.post("/v1/suppressions", json=body)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "urn:postline:problem:validation"
    assert problem["instance"] == "/v1/suppressions"
    assert "9 of the 10 entries" in problem["detail"] and problem["fix"]
    errors = {e["index"]: e for e in problem["errors"]}
    assert sorted(errors) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert all(e["message"] and e["fix"] for e in problem["errors"])
    assert errors[1]["field"] == "suppressions[1].address"
    assert "not a valid email address" in errors[1]["message"]
    assert errors[3]["field"] == "suppressions[3].reason"
    assert "soft_bounce" in errors[3]["fix"]
    assert "past" in errors[4]["message"]
    assert "time zone" in errors[5]["message"]
    assert errors[6]["field"] == "suppressions[6].colour"
    assert errors[7]["field"] == "suppressions[7].address"
    assert errors[7]["message"] == "this field is required"
    assert errors[8]["field"] == "suppressions[8]"
    assert errors[9]["field"] == "suppressions[9].detail"
    # Nothing was added, not even the valid entry.
    assert await _all(client) == []


async def test_request_shape_problems(client: httpx.AsyncClient) -> None:
    empty = await client.post("/v1/suppressions", json={"suppressions": []})
    assert empty.status_code == 422 and empty.json()["fix"]
    many = [{"address": f"u{i}@many.test"} for i in range(1001)]
    too_many = await client.post("/v1/suppressions", json={"suppressions": many})
    assert too_many.status_code == 422 and "Split" in too_many.json()["fix"]
    wrong = await client.post("/v1/suppressions", json={"addresses": ["a@b.test"]})
    assert wrong.status_code == 422
    assert wrong.headers["content-type"] == "application/problem+json"
    broken = await client.post(
        "/v1/suppressions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    # An address given twice counts once; the last entry wins.
    twice = await client.post(
        "/v1/suppressions",
        json={
            "suppressions": [
                {"address": "dup@example.test", "reason": "manual"},
                {"address": "DUP@example.test", "reason": "complaint"},
            ]
        },
    )
    assert twice.json() == {"added": 1}
    assert [(e["address"], e["reason"]) for e in await _all(client)] == [
        ("dup@example.test", "complaint")
    ]


async def test_authentication_is_required(node: Node) -> None:
    async with api_client(node) as anon:
        for r in (
            await anon.get("/v1/suppressions"),
            await anon.post("/v1/suppressions", json={"suppressions": [{"address": "a@b.test"}]}),
            await anon.delete("/v1/suppressions/a%40b.test"),
        ):
            assert r.status_code == 401
            assert r.headers["content-type"] == "application/problem+json"


async def test_tenants_are_isolated_and_the_global_list_is_hidden(
    client: httpx.AsyncClient, other: httpx.AsyncClient, node: Node
) -> None:
    await client.post(
        "/v1/suppressions",
        json={"suppressions": [{"address": "shared@x.test"}, {"address": "a-only@x.test"}]},
    )
    await other.post(
        "/v1/suppressions",
        json={
            "suppressions": [
                {"address": "shared@x.test", "reason": "complaint"},
                {"address": "b-only@x.test"},
            ]
        },
    )
    now = time.time()
    await node.store.add_suppressions(
        [
            Suppression("*", "global@x.test", "complaint", now, source="cli"),
            Suppression("*", "a-only@x.test", "hard_bounce", now, source="cli"),
        ]
    )
    a = [(e["address"], e["reason"]) for e in await _all(client)]
    b = [(e["address"], e["reason"]) for e in await _all(other)]
    assert a == [("a-only@x.test", "manual"), ("shared@x.test", "manual")]
    assert b == [("b-only@x.test", "manual"), ("shared@x.test", "complaint")]

    # A's lookup finds neither B's entries nor global ones.
    for address in ("b-only@x.test", "global@x.test"):
        r = await client.get("/v1/suppressions", params={"address": address})
        assert r.json()["data"] == [], address
    own = await client.get("/v1/suppressions", params={"address": "a-only@x.test"})
    assert [e["reason"] for e in own.json()["data"]] == ["manual"]

    # A cannot delete B's or the global entries...
    assert (await client.delete("/v1/suppressions/b-only%40x.test")).status_code == 404
    assert (await client.delete("/v1/suppressions/global%40x.test")).status_code == 404
    # ...and deleting its own shared entry leaves B's in place.
    assert (await client.delete("/v1/suppressions/shared%40x.test")).status_code == 204
    assert [e["address"] for e in await _all(other)] == ["b-only@x.test", "shared@x.test"]
    # Deleting A's entry of an address that is also global leaves the global entry.
    assert (await client.delete("/v1/suppressions/a-only%40x.test")).status_code == 204
    tenant_a = await node.store.get_tenant(name="acme")
    assert tenant_a is not None
    still = await node.store.suppressed(tenant_a.id, ["a-only@x.test", "global@x.test"], now=now)
    assert {k: v.tenant_id for k, v in still.items()} == {
        "a-only@x.test": "*",
        "global@x.test": "*",
    }
    assert await _all(client) == []

    # A's cursor names a position, not an entry: it cannot reveal B's list.
    await client.post(
        "/v1/suppressions",
        json={"suppressions": [{"address": f"a{i}@x.test"} for i in range(3)]},
    )
    first = (await other.get("/v1/suppressions", params={"limit": 1})).json()
    mixed = (await client.get("/v1/suppressions", params={"cursor": first["next_cursor"]})).json()
    assert {e["address"] for e in mixed["data"]} <= {"a0@x.test", "a1@x.test", "a2@x.test"}


async def test_addresses_with_slashes_and_plus(client: httpx.AsyncClient) -> None:
    await client.post(
        "/v1/suppressions",
        json={"suppressions": [{"address": "a/b+tag@example.test"}]},
    )
    r = await client.delete("/v1/suppressions/" + quote("a/b+tag@example.test", safe=""))
    assert r.status_code == 204, r.text
    assert await _all(client) == []
