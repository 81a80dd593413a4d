"""Nodes and checks shared by the tests of store outages and failovers (tests/faults):
``postline serve`` nodes on a PostgreSQL URL delivering to a loopback sink, and what the
store and the node say afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg

from postline.store.postgres.backend import PostgresStore
from postline.tenants import generate_key, hash_key, key_prefix
from support.node import free_port, node_toml

__all__ = ["log_lines", "message", "metric", "node_config", "recipient_states", "tenant_key"]


def node_config(
    tmp: Path,
    name: str,
    dsn: str,
    sink_port: int,
    *,
    lease: float,
    max_leased: int = 100,
    extra: str = "",
) -> Path:
    """A delivering node (one worker, JSON log at ``info``) on ``dsn`` that routes every
    domain to the sink, with no submission listener."""
    body = f"""
[node]
workers = 1
shutdown_timeout = "8s"
[log]
format = "json"
level = "info"
[delivery]
helo_hostname = "{name}.postline.test"
tls = "disabled"
idle_timeout = "2s"
[[delivery.routes]]
domain = "*"
host = "127.0.0.1"
port = {sink_port}
[retry]
first = "1s"
max_interval = "2s"
[queue]
lease_time = "{lease}s"
scan_interval = "300ms"
max_leased = {max_leased}
{extra}"""
    path = tmp / name / "node.toml"
    path.parent.mkdir(parents=True)
    text = node_toml(
        path.parent / "data", body, api=f"127.0.0.1:{free_port()}", top_extra=f'store = "{dsn}"'
    )
    text = text.replace('node_id = "test-node"', f'node_id = "{name}"')
    text = text.replace('[log]\nlevel = "warning"\n', "", 1)
    path.write_text(text.replace("[submission]\n", "[submission]\nenabled = false\n", 1))
    return path


async def tenant_key(dsn: str, name: str = "shop") -> str:
    """A new tenant ``name`` in the PostgreSQL store at ``dsn``; returns its API key."""
    store = PostgresStore(dsn)
    await store.open()
    try:
        tenant = await store.create_tenant(name)
        key = generate_key()
        await store.add_api_key(tenant.id, hash_key(key), key_prefix(key))
        return key
    finally:
        await store.close()


def message(to: str) -> dict[str, Any]:
    return {"from": {"email": "app@shop.test"}, "to": [{"email": to}], "subject": "hi", "text": "x"}


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{want}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in path.read_text(errors="replace").splitlines()
        if line.startswith("{")
    ]


async def recipient_states(dsn: str) -> tuple[dict[str, str], dict[str, int]]:
    """(state by address, delivered events by address) as the store has them."""
    conn = await asyncpg.connect(dsn)
    try:
        states = {r[0]: r[1] for r in await conn.fetch("SELECT address, state FROM recipients")}
        events: dict[str, int] = {}
        for (address,) in await conn.fetch("SELECT recipient FROM events WHERE type = 'delivered'"):
            events[address] = events.get(address, 0) + 1
        return states, events
    finally:
        await conn.close()
