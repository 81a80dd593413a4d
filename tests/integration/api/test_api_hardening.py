"""Small hardening properties of the HTTP API and the store files."""

from __future__ import annotations

import stat
from pathlib import Path

from support.node import add_tenant, api_client, running_node


async def test_a_trailing_slash_is_not_redirected_to_the_clients_host(tmp_path: Path) -> None:
    async with running_node(tmp_path, "[delivery]\nenabled = false\n") as node:
        key = await add_tenant(node)
        async with api_client(node, key) as client:
            r = await client.get("/v1/events/", headers={"host": "evil.example"})
            assert r.status_code == 404, r.headers
            assert "location" not in r.headers
            assert r.headers["content-type"] == "application/problem+json"
            assert (await client.get("/v1/events")).status_code == 200


async def test_the_store_files_are_readable_by_the_nodes_user_only(tmp_path: Path) -> None:
    async with running_node(tmp_path, "[delivery]\nenabled = false\n") as node:
        await add_tenant(node)
        files = [p for p in tmp_path.rglob("*.db*") if p.is_file()]
        assert files
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (path, oct(path.stat().st_mode))
