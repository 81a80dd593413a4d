"""GET /v1/audit over real HTTP: a tenant's changes through /v1 (domains, webhooks,
suppressions, queue pauses) are audited with its key's id as the actor, an operator's
actions on it are there too, and each tenant sees only its own entries, a page at a
time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from postline.control.tokens import generate_token, hash_token
from postline.runtime import Node
from support.node import add_tenant, api_client, running_node

NODE = """
[delivery]
enabled = false
[webhooks]
allow_http = true
allow_networks = ["127.0.0.0/8"]
"""


async def _all(api: Any, limit: int) -> list[dict[str, Any]]:
    """Every entry of the tenant's audit log, walked a page of ``limit`` at a time."""
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        r = await api.get("/v1/audit", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        out.extend(page["entries"])
        if page["next_cursor"] is None:
            return out
        assert len(page["entries"]) == limit
        params["cursor"] = page["next_cursor"]


async def _key_id(node: Node, tenant_name: str) -> str:
    tenant = await node.store.get_tenant(name=tenant_name)
    assert tenant is not None
    [key] = await node.store.api_keys(tenant.id)
    return key.id


async def test_tenant_changes_are_audited_and_each_tenant_sees_its_own(tmp_path: Path) -> None:
    async with running_node(tmp_path, NODE) as node:
        acme_key, beta_key = await add_tenant(node, "acme"), await add_tenant(node, "beta")
        acme = await node.store.get_tenant(name="acme")
        assert acme is not None
        secret = generate_token()
        await node.store.add_admin_token("ops", hash_token(secret), secret[:11])
        async with (
            api_client(node, acme_key) as a,
            api_client(node, beta_key) as b,
            api_client(node, secret) as admin,
        ):
            rid = {"X-Request-Id": "req-acme-domain"}
            assert (
                await a.post("/v1/domains", json={"domain": "acme.test"}, headers=rid)
            ).status_code == 201
            assert (await a.post("/v1/domains/acme.test/rotate")).status_code == 200
            hook = await a.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h?token=s3"})
            assert hook.status_code == 201, hook.text
            hook_id = hook.json()["id"]
            assert (
                await a.patch(f"/v1/webhooks/{hook_id}", json={"enabled": False})
            ).status_code == 200
            assert (await a.post(f"/v1/webhooks/{hook_id}/rotate-secret")).status_code == 200
            assert (await a.delete(f"/v1/webhooks/{hook_id}")).status_code == 204
            body = {"suppressions": [{"address": "x@example.test"}, {"address": "y@example.test"}]}
            assert (await a.post("/v1/suppressions", json=body)).status_code == 200
            assert (await a.delete("/v1/suppressions/x%40example.test")).status_code == 204
            assert (await a.post("/v1/queues/example.test/pause")).status_code == 200
            assert (await a.post("/v1/queues/example.test/resume")).status_code == 200
            assert (await a.delete("/v1/domains/acme.test")).status_code == 204
            # The operator acts on acme; beta changes its own configuration.
            r = await admin.post(f"/admin/v1/tenants/{acme.id}/pause", json={"reason": "x"})
            assert r.status_code == 200
            assert (await b.post("/v1/domains", json={"domain": "beta.test"})).status_code == 201

            # The pause refuses sending, not reading: acme reads its log.
            mine = await _all(a, limit=3)
            assert [e["action"] for e in mine] == [
                "domain.add",
                "domain.rotate",
                "webhook.create",
                "webhook.update",
                "webhook.rotate_secret",
                "webhook.delete",
                "suppression.add",
                "suppression.remove",
                "queue.pause",
                "queue.resume",
                "domain.remove",
                "tenant.pause",
            ]
            acme_key_id = await _key_id(node, "acme")
            assert {e["tenant_id"] for e in mine} == {acme.id}
            assert all(e["actor"] == {"kind": "tenant_key", "id": acme_key_id} for e in mine[:-1])
            assert mine[-1]["actor"]["kind"] == "admin_token"
            assert mine[0]["request_id"] == "req-acme-domain" and mine[0]["target"] == "acme.test"
            # No secret of the webhook, nor its query, is kept.
            assert mine[2]["detail"]["url"] == "http://127.0.0.1:9/h"
            assert "token=" not in str(mine)
            assert mine[6]["detail"]["addresses"] == ["x@example.test", "y@example.test"]
            assert mine[8]["target"] == f"{acme.id}/example.test"

            theirs = await _all(b, limit=100)
            assert [e["action"] for e in theirs] == ["domain.add"]
            assert theirs[0]["actor"]["id"] == await _key_id(node, "beta")

            bad = await a.get("/v1/audit", params={"cursor": "nope"})
            assert bad.status_code == 422 and bad.json()["fix"]
            async with api_client(node) as anonymous:
                assert (await anonymous.get("/v1/audit")).status_code == 401
