"""End-to-end fixtures: the simulator and a node in the test's event loop.

``internet(tmp_path, domains, ...)`` starts a :class:`Simulator` with the given domains,
then a real node whose resolver is the sim's DNS server and whose delivery port is the
sim's SMTP port, creates a tenant and yields an :class:`E2E` with an HTTP client.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from postline.runtime import Node
from postline.sim.config import SimConfig
from postline.sim.profiles import DomainSpec, MXHostSpec, Profile
from postline.sim.runner import Simulator
from support.node import add_tenant, api_client, node_toml, running_node, wait_for

__all__ = ["E2E", "domain", "internet", "rules_toml", "sim_node_config"]

FAST_RETRY = """
[retry]
first = "1s"
multiplier = 2.0
max_interval = "2s"
max_age = "1h"
[queue]
scan_interval = "15s"
"""


def domain(name: str, profile: Profile | None = None, *, hosts: int = 1, **kw: Any) -> DomainSpec:
    """A simulated domain with ``hosts`` MX hosts ``mxN.<name>``."""
    mx = tuple(MXHostSpec(f"mx{i + 1}.{name}", preference=10 * (i + 1)) for i in range(hosts))
    return DomainSpec(name=name, mx=mx, profile=profile or Profile(), **kw)


def rules_toml(rules: Iterable[dict[str, Any]]) -> str:
    """``[[throttle.rules]]`` tables from dicts."""
    out = []
    for rule in rules:
        out.append("[[throttle.rules]]")
        for key, value in rule.items():
            if isinstance(value, str):
                out.append(f'{key} = "{value}"')
            elif isinstance(value, list | tuple):
                out.append(f"{key} = {json.dumps(list(value))}")
            else:
                out.append(f"{key} = {value}")
    return "\n".join(out) + "\n"


def sim_node_config(
    tmp_path: Path,
    sim: Simulator,
    rules: Iterable[dict[str, Any]],
    *,
    lease_time: float,
    scan_interval: str,
    extra: str = "",
) -> Path:
    """``tmp_path/node.toml`` for a ``postline serve`` that delivers to ``sim`` with short
    timeouts and retries (crash and restart tests); ``extra`` is more TOML."""
    text = f"""{extra}
[dns]
nameservers = ["{sim.dns_address}"]
timeout = "1s"
min_ttl = "1s"
[delivery]
smtp_port = {sim.smtp_port}
helo_hostname = "node.postline.test"
idle_timeout = "1s"
tls = "disabled"
[delivery.timeouts]
connect = "3s"
banner = "5s"
quit = "1s"
[retry]
first = "1s"
max_interval = "2s"
max_age = "1h"
[queue]
lease_time = "{lease_time:g}s"
scan_interval = "{scan_interval}"
"""
    path = tmp_path / "node.toml"
    path.write_text(node_toml(tmp_path / "data", text + rules_toml(rules)))
    return path


@dataclass
class E2E:
    sim: Simulator
    node: Node
    api: httpx.AsyncClient

    async def send(self, to: Sequence[str] | str, **fields: Any) -> dict[str, Any]:
        """POST one message; returns the 202 body."""
        body = {
            "from": "sender@postline.test",
            "to": [to] if isinstance(to, str) else list(to),
            "subject": "test",
            "text": "hello",
            **fields,
        }
        r = await self.api.post("/v1/messages", json=body)
        assert r.status_code == 202, r.text
        return dict(r.json())

    async def send_many(self, addresses: Sequence[str], batch: int = 500) -> list[dict[str, Any]]:
        """One message per address through the batch endpoint; the accepted items."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(addresses), batch):
            messages = [
                {"from": "sender@postline.test", "to": [a], "subject": f"m{i + j}", "text": "hi"}
                for j, a in enumerate(addresses[i : i + batch])
            ]
            r = await self.api.post("/v1/messages/batch", json={"messages": messages})
            assert r.status_code == 202, r.text
            out.extend(r.json()["results"])
        return out

    async def message(self, message_id: str) -> dict[str, Any]:
        r = await self.api.get(f"/v1/messages/{message_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def counts(self) -> dict[str, int]:
        return await self.node.store.state_counts()

    async def settle(self, total: int, timeout: float = 30.0) -> dict[str, int]:
        """Wait until ``total`` recipients are in a final state; returns the counts."""

        async def done() -> dict[str, int] | None:
            counts = await self.counts()
            final = sum(n for state, n in counts.items() if state != "queued")
            return counts if final >= total and not counts.get("queued") else None

        result: dict[str, int] = await wait_for(done, timeout=timeout, interval=0.1)
        return result

    async def events(self, **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            q = {"limit": 1000, **params}
            if cursor:
                q["cursor"] = cursor
            page = (await self.api.get("/v1/events", params=q)).json()
            out.extend(page["events"])
            if len(page["events"]) < 1000:
                return out
            cursor = page["next_cursor"]


@contextlib.asynccontextmanager
async def internet(
    tmp_path: Path,
    domains: Sequence[DomainSpec],
    *,
    node_extra: str = FAST_RETRY,
    rules: Iterable[dict[str, Any]] = ({"name": "default", "connections": 10},),
    greylist_delay: float = 1.0,
    delivery_extra: str = "",
    store: str | None = None,
    throttle_backend: str | None = None,
    api_extra: str = "",
) -> AsyncIterator[E2E]:
    """The sim with ``domains`` and a node pointed at it (see module docstring).

    ``delivery_extra`` holds more ``[delivery]`` keys (e.g. ``tls = "disabled"``); the
    table is written here, so ``node_extra`` cannot open it again. ``store`` and
    ``throttle_backend`` select other backends (a PostgreSQL DSN, a Redis URL);
    ``api_extra`` holds more ``[api]`` keys (e.g. ``public_url = "https://..."``).
    """
    sim = Simulator(SimConfig(domains=tuple(domains), greylist_delay=greylist_delay, seed=7))
    await sim.start()
    try:
        extra = (
            f"""
[dns]
nameservers = ["{sim.dns_address}"]
timeout = "1s"
min_ttl = "1s"
negative_ttl = "5s"
temp_fail_ttl = "1s"
[delivery]
smtp_port = {sim.smtp_port}
helo_hostname = "node.postline.test"
idle_timeout = "1s"
{delivery_extra}
[delivery.timeouts]
connect = "3s"
banner = "5s"
ehlo = "5s"
starttls = "5s"
mail_from = "5s"
rcpt_to = "5s"
data = "5s"
data_dot = "10s"
quit = "1s"
"""
            + node_extra
            # A Redis the node has not used before grants no connection slot for one
            # connection lease (the fencing quarantine, docs/scaling.md): a short one.
            + (
                f'[throttle]\nbackend = "{throttle_backend}"\nconnection_lease = "3s"\n'
                if throttle_backend
                else ""
            )
            + rules_toml(rules)
        )
        top = f'store = "{store}"' if store else ""
        async with running_node(tmp_path, extra, top_extra=top, api_extra=api_extra) as node:
            key = await add_tenant(node)
            async with api_client(node, key) as api:
                yield E2E(sim, node, api)
    finally:
        await sim.stop()


def elapsed_since(t0: float) -> float:
    return time.monotonic() - t0
