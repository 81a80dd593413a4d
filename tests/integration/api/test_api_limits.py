"""Rate limits and quotas over real HTTP against a real node (delivery off): set through
the admin API, enforced on /v1/messages and /v1/messages/batch, shown by /v1/usage and
the admin tenant view, audited."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from postline.control.tokens import generate_token, hash_token
from postline.runtime import Node
from support.node import api_client, running_node

NO_DELIVERY = "[delivery]\nenabled = false\n"


def msg(*to: str) -> dict[str, Any]:
    return {
        "from": "ann@acme.test",
        "to": list(to) or ["bob@example.test"],
        "subject": "Hi",
        "text": "Hello",
    }


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(tmp_path, NO_DELIVERY) as n:
        yield n


@pytest.fixture
async def admin(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    secret = generate_token()
    await node.store.add_admin_token("ops", hash_token(secret), secret[:11])
    async with api_client(node, secret) as client:
        yield client


async def _tenant(admin: httpx.AsyncClient, name: str, **limits: int) -> tuple[str, str]:
    """A tenant made through the admin API with its own limits: (id, first key)."""
    r = await admin.post("/admin/v1/tenants", json={"name": name, "limits": limits})
    assert r.status_code == 201, r.text
    return r.json()["tenant"]["id"], r.json()["api_key"]


async def test_a_burst_of_10_at_5_per_second(node: Node, admin: httpx.AsyncClient) -> None:
    _, key = await _tenant(admin, "acme", rate_per_second=5, burst=10)
    async with api_client(node, key) as tenant:
        started = time.monotonic()
        accepted = 0
        while True:
            r = await tenant.post("/v1/messages", json=msg(f"r{accepted}@example.test"))
            if r.status_code != 202:
                break
            accepted += 1
            assert accepted <= 100, "the rate limit never refused"
        elapsed = time.monotonic() - started
        # The burst, plus what 5 per second refilled while the requests went out.
        assert 10 <= accepted <= 10 + math.floor(5 * elapsed)
        refused = r
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        retry = int(refused.headers["retry-after"])
        assert retry >= 1
        problem = refused.json()
        assert problem["type"] == "urn:postline:problem:rate-limited"
        assert problem["title"] == "Rate limit reached"
        assert (problem["limit"], problem["rate"], problem["burst"]) == ("tenant", 5, 10)
        assert problem["retry_after"] == retry
        assert "5 recipients per second (burst 10)" in problem["detail"]
        assert f"retry in {retry} s" in problem["detail"]

        await asyncio.sleep(retry)
        again = await tenant.post("/v1/messages", json=msg("late@example.test"))
        assert again.status_code == 202, again.text
    assert await node.store.state_counts() == {"queued": accepted + 1}
    # The node's /metrics counts the refusal, by kind and channel.
    text = (await admin.get("/metrics")).text
    assert 'postline_limit_refusals_total{channel="api",kind="rate"} 1.0' in text
    assert 'postline_limit_refusals_total{channel="smtp",kind="rate"} 0.0' in text


async def test_a_message_counts_its_recipients_and_a_batch_is_all_or_nothing(
    node: Node, admin: httpx.AsyncClient
) -> None:
    _, key = await _tenant(admin, "acme", rate_per_second=1, burst=5)
    async with api_client(node, key) as tenant:
        five = [f"{c}@x.test" for c in "abcde"]
        r = await tenant.post("/v1/messages", json=msg(*five))
        assert r.status_code == 202, r.text
        # The burst is spent (one recipient comes back a second): a batch of 2 messages
        # is refused whole, not cut to what would fit.
        batch = {"messages": [msg(f"b{i}@x.test") for i in range(2)]}
        refused = await tenant.post("/v1/messages/batch", json=batch)
        assert refused.status_code == 429, refused.text
        assert refused.json()["type"] == "urn:postline:problem:rate-limited"
        assert "this request has 2 recipient(s)" in refused.json()["detail"]
        assert await node.store.state_counts() == {"queued": 5}
        usage = (await tenant.get("/v1/usage")).json()
        assert usage["usage"]["day"]["used"] == 5
        await asyncio.sleep(int(refused.headers["retry-after"]))
        assert (await tenant.post("/v1/messages/batch", json=batch)).status_code == 202
    assert await node.store.state_counts() == {"queued": 7}


async def test_a_key_limit_holds_that_key_only(node: Node, admin: httpx.AsyncClient) -> None:
    tenant_id, first = await _tenant(admin, "acme")
    r = await admin.post(
        f"/admin/v1/tenants/{tenant_id}/keys",
        json={"name": "newsletter", "rate_per_second": 1, "burst": 2},
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["key"]["limits"] == {
        "rate_per_second": 1,
        "burst": 2,
        "overridden": ["rate_per_second", "burst"],
    }
    slow = made["secret"]
    async with api_client(node, slow) as newsletter, api_client(node, first) as app:
        both = await newsletter.post("/v1/messages", json=msg("n0@x.test", "n1@x.test"))
        assert both.status_code == 202, both.text
        refused = await newsletter.post("/v1/messages", json=msg("n2@x.test", "n3@x.test"))
        assert refused.status_code == 429
        assert refused.json()["limit"] == "key"
        assert made["key"]["prefix"] in refused.json()["detail"]
        # The tenant's other key is not held by the newsletter key's limit.
        for i in range(20):
            r = await app.post("/v1/messages", json=msg(f"a{i}@x.test"))
            assert r.status_code == 202, r.text
        mine = (await newsletter.get("/v1/usage")).json()["limits"]
        assert (mine["key_rate_per_second"], mine["key_burst"], mine["rate_per_second"]) == (
            1,
            2,
            0,
        )
    keys = (await admin.get(f"/admin/v1/tenants/{tenant_id}/keys")).json()["keys"]
    assert [k["limits"]["rate_per_second"] for k in keys] == [0, 1]
    log = (await admin.get("/admin/v1/audit", params={"tenant": tenant_id})).json()["entries"]
    created = [e for e in log if e["action"] == "api_key.create"]
    assert created[0]["detail"]["rate"] == 1 and created[0]["detail"]["burst"] == 2


async def test_a_daily_quota(node: Node, admin: httpx.AsyncClient) -> None:
    tenant_id, key = await _tenant(admin, "acme")
    r = await admin.patch(
        f"/admin/v1/tenants/{tenant_id}",
        json={"limits": {"daily_quota": 4, "monthly_quota": 1000}},
        headers={"X-Request-Id": "req-quota"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["limits"] == {
        "rate_per_second": 0,
        "burst": 0,
        "daily_quota": 4,
        "monthly_quota": 1000,
        "overridden": ["daily_quota", "monthly_quota"],
    }
    async with api_client(node, key) as tenant:
        assert (await tenant.post("/v1/messages", json=msg("a@x.test", "b@x.test"))).is_success
        # A batch that would take the day over the quota stores and counts nothing.
        batch = {"messages": [msg(f"b{i}@x.test") for i in range(3)]}
        refused = await tenant.post("/v1/messages/batch", json=batch)
        assert refused.status_code == 403, refused.text
        problem = refused.json()
        assert problem["type"] == "urn:postline:problem:quota-exceeded"
        assert (problem["quota"], problem["limit"], problem["used"], problem["requested"]) == (
            "daily",
            4,
            2,
            3,
        )
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00")
        assert problem["resets_at"].startswith(tomorrow)
        assert tomorrow in problem["detail"]
        assert (await tenant.get("/v1/usage")).json()["usage"]["day"]["used"] == 2

        for to in ("c@x.test", "d@x.test"):
            assert (await tenant.post("/v1/messages", json=msg(to))).status_code == 202
        over = await tenant.post("/v1/messages", json=msg("e@x.test"))
        assert over.status_code == 403 and over.json()["used"] == 4
        text = (await tenant.get("/metrics")).text
        assert 'postline_limit_refusals_total{channel="api",kind="daily"} 2.0' in text
        assert 'postline_limit_refusals_total{channel="api",kind="monthly"} 0.0' in text
        assert 'postline_limit_refusals_total{channel="api",kind="rate"} 0.0' in text

        usage = (await tenant.get("/v1/usage")).json()
        day = usage["usage"]["day"]
        assert (day["used"], day["limit"], day["remaining"]) == (4, 4, 0)
        assert day["resets_at"].startswith(tomorrow)
        assert usage["usage"]["month"]["used"] == 4
        assert usage["usage"]["month"]["remaining"] == 996
    assert await node.store.state_counts() == {"queued": 4}

    shown = (await admin.get(f"/admin/v1/tenants/{tenant_id}")).json()
    assert shown["usage"]["day"]["used"] == 4 and shown["limits"]["daily_quota"] == 4
    listed = (await admin.get("/admin/v1/tenants")).json()["tenants"]
    assert listed[0]["limits"]["daily_quota"] == 4 and listed[0]["usage"] is None

    # Back to the [limits] default (unlimited): the tenant sends again at once.
    r = await admin.patch(f"/admin/v1/tenants/{tenant_id}", json={"limits": {"daily_quota": None}})
    assert r.json()["limits"]["daily_quota"] == 0
    assert r.json()["limits"]["overridden"] == ["monthly_quota"]
    async with api_client(node, key) as tenant:
        assert (await tenant.post("/v1/messages", json=msg("e@x.test"))).status_code == 202

    log = (await admin.get("/admin/v1/audit", params={"tenant": tenant_id})).json()["entries"]
    first = next(e for e in log if e["request_id"] == "req-quota")
    assert first["action"] == "tenant.limits"
    assert first["detail"]["previous"]["daily"] is None
    assert first["detail"]["limits"]["daily"] == 4 and first["detail"]["changed"] is True


async def test_config_defaults_hold_every_tenant(tmp_path: Path) -> None:
    extra = NO_DELIVERY + "[limits]\ndaily = 2\n"
    async with running_node(tmp_path, extra) as node:
        secret = generate_token()
        await node.store.add_admin_token("ops", hash_token(secret), secret[:11])
        async with api_client(node, secret) as admin:
            _, key = await _tenant(admin, "acme")
            bad = await admin.patch("/admin/v1/tenants/nope", json={"limits": {"daily_quota": 1}})
            assert bad.status_code == 404
            r = await admin.post("/admin/v1/tenants", json={"name": "x", "limits": {"burst": -1}})
            assert r.status_code == 422
        async with api_client(node, key) as tenant:
            ok = await tenant.post("/v1/messages", json=msg("a@x.test", "b@x.test"))
            assert ok.status_code == 202
            assert (await tenant.post("/v1/messages", json=msg("c@x.test"))).status_code == 403


async def test_a_keys_rate_and_scopes_changed_after_creation(
    node: Node, admin: httpx.AsyncClient
) -> None:
    tenant_id, first = await _tenant(admin, "acme")
    made = (await admin.post(f"/admin/v1/tenants/{tenant_id}/keys", json={"name": "app"})).json()
    key_id, secret = made["key"]["id"], made["secret"]
    path = f"/admin/v1/tenants/{tenant_id}/keys/{key_id}"
    async with api_client(node, secret) as app:
        # No limit of its own yet: 6 recipients go in at once.
        assert (
            await app.post("/v1/messages", json=msg(*[f"a{i}@x.test" for i in range(6)]))
        ).is_success

        r = await admin.patch(
            path, json={"rate_per_second": 1, "burst": 2}, headers={"X-Request-Id": "req-key"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["limits"] == {
            "rate_per_second": 1,
            "burst": 2,
            "overridden": ["rate_per_second", "burst"],
        }
        # The serving node applies it at once: the key's cached identity is dropped.
        assert (await app.post("/v1/messages", json=msg("b0@x.test", "b1@x.test"))).is_success
        refused = await app.post("/v1/messages", json=msg("b2@x.test"))
        assert refused.status_code == 429, refused.text
        assert (refused.json()["limit"], refused.json()["rate"]) == ("key", 1)
        # The tenant's first key is not held by it.
        async with api_client(node, first) as other:
            assert (await other.post("/v1/messages", json=msg("c@x.test", "d@x.test"))).is_success

        # Only the fields given change; null puts the [limits] default (none) back.
        r = await admin.patch(path, json={"burst": None})
        assert r.json()["limits"] == {
            "rate_per_second": 1,
            "burst": 1,
            "overridden": ["rate_per_second"],
        }
        r = await admin.patch(path, json={"rate_per_second": None})
        assert r.json()["limits"] == {"rate_per_second": 0, "burst": 0, "overridden": []}
        many = msg(*[f"e{i}@x.test" for i in range(5)])
        assert (await app.post("/v1/messages", json=many)).status_code == 202

        # Scopes: a send-only key cannot read any more, at once; null gives them all back.
        r = await admin.patch(path, json={"scopes": ["send"]})
        assert r.status_code == 200 and r.json()["scopes"] == ["send"]
        assert (await app.get("/v1/usage")).status_code == 403
        r = await admin.patch(path, json={"scopes": None})
        assert r.json()["scopes"] == ["send", "read", "suppressions", "domains", "webhooks"]
        assert (await app.get("/v1/usage")).status_code == 200

    # Bad input: problem JSON, nothing changed.
    for body, field in (
        ({"rate_per_second": -1}, "rate_per_second"),
        ({"scopes": ["admin"]}, "scopes"),
        ({"scopes": []}, "scopes"),
        ({"name": "x"}, "name"),
    ):
        bad = await admin.patch(path, json=body)
        assert bad.status_code == 422, (body, bad.text)
        assert bad.headers["content-type"] == "application/problem+json"
        assert field in bad.text, (body, bad.text)
    assert (
        await admin.patch(f"/admin/v1/tenants/{tenant_id}/keys/nope", json={})
    ).status_code == 404
    assert (await admin.patch(f"/admin/v1/tenants/nope/keys/{key_id}", json={})).status_code == 404
    assert (await admin.delete(path)).status_code == 200
    gone = await admin.patch(path, json={"rate_per_second": 5})
    assert gone.status_code == 404 and "no live API key" in gone.json()["detail"]

    log = (await admin.get("/admin/v1/audit", params={"tenant": tenant_id})).json()["entries"]
    updates = [e for e in log if e["action"] == "api_key.update"]
    assert len(updates) == 5
    first_update = next(e for e in updates if e["request_id"] == "req-key")
    assert first_update["target"] == key_id and first_update["actor"]["kind"] == "admin_token"
    assert first_update["detail"]["previous"] == {
        "scopes": ["send", "read", "suppressions", "domains", "webhooks"],
        "rate": None,
        "burst": None,
    }
    assert first_update["detail"]["key"]["rate"] == 1 and first_update["detail"]["changed"]
