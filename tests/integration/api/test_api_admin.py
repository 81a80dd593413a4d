"""/admin/v1 over real HTTP against a real node (delivery off): a token made by the CLI
creates a tenant, whose key sends mail; a pause refuses it, a resume lets it through;
the audit log tells it all in order. And every mutating admin route writes an entry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from typer.testing import CliRunner

from postline.api.app import create_app
from postline.api.context import ApiContext
from postline.cli import app as cli_app
from postline.config import Config
from postline.control.tokens import generate_token, hash_token
from postline.runtime import Node
from postline.store.base import Reroute
from support.node import api_client, running_node

NO_DELIVERY = "[delivery]\nenabled = false\n"
MSG = {"from": "ann@acme.test", "to": ["bob@example.test"], "subject": "Hi", "text": "Hello"}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(tmp_path, NO_DELIVERY) as n:
        yield n


async def cli_token(config: Path) -> str:
    """``postline admin token create`` beside the running node; the token."""
    args = ["admin", "token", "create", "--name", "ops", "--config", str(config)]
    result = await asyncio.to_thread(CliRunner().invoke, cli_app, args)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()[-1]


async def test_operator_walkthrough(node: Node, tmp_path: Path) -> None:
    token = await cli_token(tmp_path / "node.toml")
    async with api_client(node, token) as admin:
        r = await admin.post(
            "/admin/v1/tenants", json={"name": "acme"}, headers={"X-Request-Id": "req-create"}
        )
        assert r.status_code == 201, r.text
        assert r.headers["x-request-id"] == "req-create"
        created = r.json()
        tenant_id = created["tenant"]["id"]
        assert created["tenant"]["status"]["status"] == "ok"
        key = created["api_key"]
        assert key.startswith(created["api_key_prefix"])

        async with api_client(node, key) as tenant:
            sent = await tenant.post("/v1/messages", json=MSG)
            assert sent.status_code == 202, sent.text

            # A tenant's key has no business on the admin API; nor has a stranger.
            assert (await tenant.get("/admin/v1/tenants")).status_code == 403
            async with api_client(node) as anonymous:
                r = await anonymous.get("/admin/v1/tenants")
                assert r.status_code == 401
                assert r.headers["content-type"] == "application/problem+json"
            async with api_client(node, "pla_" + "x" * 52) as wrong:
                assert (await wrong.get("/admin/v1/audit")).status_code == 401

            r = await admin.post(
                f"/admin/v1/tenants/{tenant_id}/pause",
                json={"reason": "spam trap hits"},
                headers={"X-Request-Id": "req-pause"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["status"]["status"] == "paused"
            assert r.json()["status"]["changed_by"] == "operator"

            refused = await tenant.post("/v1/messages", json=MSG)
            assert refused.status_code == 403, refused.text
            problem = refused.json()
            assert problem["type"] == "urn:postline:problem:sending-paused"
            assert "spam trap hits" in problem["detail"]

            r = await admin.post(f"/admin/v1/tenants/{tenant_id}/resume")
            assert r.status_code == 200 and r.json()["status"]["status"] == "ok"
            resume_rid = r.headers["x-request-id"]
            again = await tenant.post("/v1/messages", json=MSG)
            assert again.status_code == 202, again.text

        shown = (await admin.get(f"/admin/v1/tenants/{tenant_id}")).json()
        assert shown["name"] == "acme" and shown["status"]["status"] == "ok"
        listed = (await admin.get("/admin/v1/tenants")).json()["tenants"]
        assert [t["name"] for t in listed] == ["acme"]
        assert (await admin.get("/admin/v1/tenants/nope")).status_code == 404

        log = (await admin.get("/admin/v1/audit")).json()
        got = [(e["action"], e["actor"]["kind"], e["request_id"]) for e in log["entries"]]
        assert got == [
            ("admin_token.create", "cli", ""),
            ("tenant.create", "admin_token", "req-create"),
            ("tenant.pause", "admin_token", "req-pause"),
            ("tenant.resume", "admin_token", resume_rid),
        ]
        assert log["next_after"] is None
        pause_entry = log["entries"][2]
        assert pause_entry["tenant_id"] == tenant_id and pause_entry["target"] == tenant_id
        assert pause_entry["detail"]["reason"] == "spam trap hits"
        assert key not in str(log) and token not in str(log)

        mine = (await admin.get("/admin/v1/audit", params={"tenant": tenant_id})).json()
        assert [e["action"] for e in mine["entries"]] == [
            "tenant.create",
            "tenant.pause",
            "tenant.resume",
        ]
        first = (await admin.get("/admin/v1/audit", params={"limit": 2})).json()
        rest = (await admin.get("/admin/v1/audit", params={"after": first["next_after"]})).json()
        assert [e["id"] for e in first["entries"] + rest["entries"]] == [
            e["id"] for e in log["entries"]
        ]

        tokens = (await admin.get("/admin/v1/tokens")).json()["tokens"]
        assert [(t["name"], t["prefix"]) for t in tokens] == [("ops", token[:11])]
        assert tokens[0]["last_used_at"] is not None
        r = await admin.delete(f"/admin/v1/tokens/{tokens[0]['id']}")
        assert r.status_code == 200 and r.json()["revoked_at"] is not None
        assert (await admin.get("/admin/v1/tenants")).status_code == 401


async def test_a_config_token_is_accepted_by_its_hash(tmp_path: Path) -> None:
    token = generate_token()
    extra = NO_DELIVERY + f'[admin]\ntokens = ["sha256:{hash_token(token)}"]\n'
    async with running_node(tmp_path, extra) as node, api_client(node, token) as admin:
        r = await admin.post("/admin/v1/tokens", json={"name": "made-by-config-token"})
        assert r.status_code == 201, r.text
        assert r.json()["secret"].startswith("pla_")
        [entry] = (await admin.get("/admin/v1/audit")).json()["entries"]
        assert entry["actor"] == {"kind": "config_token", "id": f"sha256:{hash_token(token)[:12]}"}
        r = await admin.delete(f"/admin/v1/tokens/sha256:{hash_token(token)[:12]}")
        assert r.status_code == 422


# Bodies of the mutating routes that need one; every other route is sent {}.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/admin/v1/tenants"): {"name": "walked"},
    ("post", "/admin/v1/queues/reroute"): {
        "domain": "walked.test",
        "host": "127.0.0.1",
        "port": 2525,
        "duration": "1h",
    },
    ("patch", "/admin/v1/tenants/{tenant_id}"): {"limits": {"daily_quota": 10}},
}


async def test_an_audit_cursor_past_the_largest_id_is_refused(tmp_path: Path) -> None:
    """A store's integers end at 2**63 - 1: a larger cursor is a 422, not a 500."""
    token = generate_token()
    extra = NO_DELIVERY + f'[admin]\ntokens = ["sha256:{hash_token(token)}"]\n'
    async with running_node(tmp_path, extra) as node, api_client(node, token) as admin:
        r = await admin.get("/admin/v1/audit", params={"after": str(2**64)})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "after" in r.text
        r = await admin.get("/admin/v1/audit", params={"after": str(2**63 - 1)})
        assert r.status_code == 200, r.text
        assert r.json()["entries"] == []


def _body_fields(spec: dict[str, Any], op: dict[str, Any]) -> frozenset[str]:
    """The property names of an operation's JSON request body."""
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    schema = schema.get("schema", {})
    for alt in schema.get("anyOf", [schema]):
        ref = alt.get("$ref", "")
        if ref:
            return frozenset(spec["components"]["schemas"][ref.rpartition("/")[2]]["properties"])
    return frozenset(schema.get("properties", {}))


def _admin_routes() -> list[tuple[str, str, frozenset[str]]]:
    ctx = ApiContext(
        config=Config.model_validate({}),
        store=cast(Any, None),
        ingestor=cast(Any, None),
        auth=cast(Any, None),
    )
    spec = create_app(ctx).openapi()
    return sorted(
        (method, path, _body_fields(spec, op))
        for path, ops in spec["paths"].items()
        if path.startswith("/admin/v1/")
        for method, op in ops.items()
        if method in ("post", "put", "patch", "delete")
    )


async def test_every_mutating_admin_route_writes_an_audit_entry(node: Node) -> None:
    routes = _admin_routes()
    assert len(routes) >= 5, routes
    secret = generate_token()
    await node.store.add_admin_token("walker", hash_token(secret), secret[:11])
    async with api_client(node, secret) as admin:
        for n, (method, path, fields) in enumerate(routes):
            tenant = await node.store.create_tenant(f"walk-{n}")
            victim = await node.store.add_admin_token(f"victim-{n}", f"hash-{n}", "pla_victim")
            key = await node.store.add_api_key(tenant.id, f"key-hash-{n}", "pl_victim")
            reroute = Reroute(f"rr-{n}", f"r{n}.test", "", "127.0.0.1", 25, 1.0, 4e9)
            await node.store.add_reroute(reroute)
            # Every path parameter an admin route has, by name (extra ones are ignored).
            params = {
                "tenant_id": tenant.id,
                "token_id": victim.id,
                "key_id": key.id,
                "reroute_id": reroute.id,
            }
            url = path.format(**params)
            assert "{" not in url, f"{method.upper()} {path}: teach this test its parameters"
            rid = f"walk-{n}"
            r = await admin.request(
                method.upper(),
                url,
                # A body naming a tenant names the one made for this route.
                json=BODIES.get((method, path))
                or ({"tenant": tenant.id} if "tenant" in fields else {}),
                headers={"X-Request-Id": rid},
            )
            assert r.status_code < 300, f"{method.upper()} {path}: {r.status_code} {r.text}"
            written = await node.store.audit_entries()
            assert any(e.request_id == rid for e in written), (
                f"{method.upper()} {path} wrote no audit entry"
            )
