"""API key scopes over real HTTP: each /v1 route needs one scope, a key without it gets
403 naming the scope, an operator makes keys with scopes and revokes them over
/admin/v1. And every /v1 route of the OpenAPI document declares its scope."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from postline.api.app import create_app
from postline.api.context import API_KEY_SCHEME, ApiContext
from postline.config import Config
from postline.control.tokens import generate_token, hash_token
from postline.runtime import Node
from postline.tenants import SCOPES, KeyAuthenticator, generate_key, hash_key, key_prefix
from support.node import api_client, running_node

NO_DELIVERY = "[delivery]\nenabled = false\n"
MSG = {"from": "ann@acme.test", "to": ["bob@example.test"], "subject": "Hi", "text": "Hello"}


def _spec() -> dict[str, Any]:
    ctx = ApiContext(
        config=Config.model_validate({}),
        store=cast(Any, None),
        ingestor=cast(Any, None),
        auth=cast(Any, None),
    )
    return create_app(ctx).openapi()


def test_every_v1_route_declares_the_scope_it_needs() -> None:
    spec = _spec()
    routes = [
        (method, path, op)
        for path, ops in spec["paths"].items()
        if path.startswith("/v1/")
        for method, op in ops.items()
    ]
    assert len(routes) >= 20, routes
    for method, path, op in routes:
        needs = [req.get(API_KEY_SCHEME) for req in op.get("security", [])]
        assert len(needs) == 1, f"{method.upper()} {path}: declare its scope with require()"
        [scopes] = needs
        assert scopes is not None and len(scopes) == 1, f"{method.upper()} {path}: {scopes}"
        assert scopes[0] in SCOPES, f"{method.upper()} {path}: {scopes}"
    assert spec["components"]["securitySchemes"][API_KEY_SCHEME]["scheme"] == "bearer"


async def _admin(node: Node) -> str:
    secret = generate_token()
    await node.store.add_admin_token("ops", hash_token(secret), secret[:11])
    return secret


async def test_a_key_can_do_what_its_scopes_allow_and_nothing_else(tmp_path: Path) -> None:
    async with running_node(tmp_path, NO_DELIVERY) as node:
        tenant = await node.store.create_tenant("acme")
        async with api_client(node, await _admin(node)) as admin:
            r = await admin.post(
                f"/admin/v1/tenants/{tenant.id}/keys", json={"name": "mailer", "scopes": ["send"]}
            )
            assert r.status_code == 201, r.text
            sender = r.json()["secret"]
            assert r.json()["key"]["scopes"] == ["send"]
            r = await admin.post(f"/admin/v1/tenants/{tenant.id}/keys", json={"scopes": ["read"]})
            reader = r.json()["secret"]
            r = await admin.post(f"/admin/v1/tenants/{tenant.id}/keys")
            assert r.status_code == 201
            assert r.json()["key"]["scopes"] == list(SCOPES)
            everything = r.json()["secret"]
            r = await admin.post(f"/admin/v1/tenants/{tenant.id}/keys", json={"scopes": ["admin"]})
            assert r.status_code == 422, r.text
            r = await admin.post(f"/admin/v1/tenants/{tenant.id}/keys", json={"scopes": []})
            assert r.status_code == 422, r.text
            r = await admin.post("/admin/v1/tenants/nobody/keys", json={"scopes": ["send"]})
            assert r.status_code == 404, r.text

        async with api_client(node, sender) as client:
            sent = await client.post("/v1/messages", json=MSG)
            assert sent.status_code == 202, sent.text
            refused = await client.get("/v1/events")
            assert refused.status_code == 403, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            problem = refused.json()
            assert problem["type"] == "urn:postline:problem:insufficient-scope"
            assert "'read' scope" in problem["detail"]
            assert f"/admin/v1/tenants/{tenant.id}/keys" in problem["fix"]
            assert 'scope="read"' in refused.headers["www-authenticate"]
        async with api_client(node, reader) as client:
            assert (await client.get("/v1/events")).status_code == 200
            r = await client.post("/v1/messages", json=MSG)
            assert r.status_code == 403, r.text
            assert "'send' scope" in r.json()["detail"]
            assert (await client.get("/v1/webhooks")).status_code == 403
        async with api_client(node, everything) as client:
            assert (await client.get("/v1/webhooks")).status_code == 200
            assert (await client.get("/v1/suppressions")).status_code == 200


async def test_a_revoked_key_is_refused(tmp_path: Path) -> None:
    async with running_node(tmp_path, NO_DELIVERY) as node:
        tenant = await node.store.create_tenant("acme")
        async with api_client(node, await _admin(node)) as admin:
            made = (await admin.post(f"/admin/v1/tenants/{tenant.id}/keys")).json()
            key_id, secret = made["key"]["id"], made["secret"]
            async with api_client(node, secret) as client:
                assert (await client.post("/v1/messages", json=MSG)).status_code == 202
                r = await admin.delete(
                    f"/admin/v1/tenants/{tenant.id}/keys/{key_id}",
                    headers={"X-Request-Id": "req-revoke"},
                )
                assert r.status_code == 200, r.text
                assert r.json()["revoked_at"] is not None
                # The serving node forgets the key at once.
                assert (await client.post("/v1/messages", json=MSG)).status_code == 401
            r = await admin.delete(f"/admin/v1/tenants/{tenant.id}/keys/{key_id}")
            assert r.status_code == 404, r.text
            listed = (await admin.get(f"/admin/v1/tenants/{tenant.id}/keys")).json()["keys"]
            [shown] = [k for k in listed if k["id"] == key_id]
            assert shown["revoked_at"] is not None and shown["last_used_at"] is not None
            assert "secret" not in shown
            entries = (await admin.get("/admin/v1/audit")).json()["entries"]
            actions = [(e["action"], e["target"]) for e in entries]
            assert actions == [("api_key.create", key_id), ("api_key.revoke", key_id)]
            assert entries[-1]["request_id"] == "req-revoke"
            assert entries[-1]["tenant_id"] == tenant.id


async def test_another_node_refuses_a_revoked_key_within_the_cache_ttl(tmp_path: Path) -> None:
    """A key revoked elsewhere (another node, the CLI) works here until the cached
    answer expires: ``[api] key_cache_ttl``."""
    ttl = 0.3
    async with running_node(tmp_path, NO_DELIVERY, api_extra=f"key_cache_ttl = {ttl}") as node:
        tenant = await node.store.create_tenant("acme")
        secret = generate_key()
        key = await node.store.add_api_key(tenant.id, hash_key(secret), key_prefix(secret))
        async with api_client(node, secret) as client:
            assert (await client.get("/v1/events")).status_code == 200
            # Revoked behind this node's back: the store alone knows.
            assert await node.store.revoke_api_key_id(tenant.id, key.id, now=0.0)
            await asyncio.sleep(ttl + 0.1)
            assert (await client.get("/v1/events")).status_code == 401


async def test_the_authenticator_caches_for_its_ttl(tmp_path: Path) -> None:
    async with running_node(tmp_path, NO_DELIVERY) as node:
        tenant = await node.store.create_tenant("acme")
        secret = generate_key()
        key = await node.store.add_api_key(tenant.id, hash_key(secret), key_prefix(secret))
        auth = KeyAuthenticator(node.store, ttl=60)
        assert (await auth.tenant(secret)) == tenant
        await node.store.revoke_api_key_id(tenant.id, key.id, now=0.0)
        assert (await auth.tenant(secret)) == tenant  # still cached
        auth.forget()
        assert await auth.tenant(secret) is None
