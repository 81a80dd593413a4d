"""Mail on a static route is under the ``relay`` throttle rule, not the catch-all.

A smarthost takes mail for every domain; the catch-all's limits (120 messages a minute, 3
connections per MX site) are a mailbox provider's. Here 200 recipients of three domains go
through one ``[[delivery.routes]]`` route to the sim: ``GET /v1/queues`` names the
``relay`` rule for them, and they are all delivered well before the catch-all's rate would
allow (200 at 2 a second is 100 s). A rule of the user's naming the route's host still
comes first.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from postline.sim.config import SimConfig
from postline.sim.profiles import DomainSpec, MXHostSpec
from postline.sim.runner import Simulator
from support.e2e import sim_node_config
from support.node import cli_tenant, served, wait_for

DOMAINS = ("a.routed.test", "b.routed.test", "c.routed.test")
RELAY = "relay.routed.test"  # the smarthost: a sim host taking mail for all three
TOTAL = 200


async def _rules_of_queues(api: httpx.AsyncClient) -> set[str] | None:
    queues = (await api.get("/v1/queues")).json()["queues"]
    rules = {q["throttle"]["rule"] for q in queues if q.get("throttle")}
    return rules or None


async def _run(tmp_path: Path, rules: list[dict[str, object]]) -> tuple[set[str], float]:
    domains = tuple(DomainSpec(d, mx=(MXHostSpec(RELAY),)) for d in DOMAINS)
    sim = Simulator(SimConfig(domains=domains, seed=11))
    await sim.start()
    try:
        route = f'[[delivery.routes]]\ndomain = "*"\nhost = "{RELAY}"\nport = {sim.smtp_port}\n'
        config = sim_node_config(
            tmp_path, sim, rules, lease_time=10, scan_interval="500ms", extra=route
        )
        key = await cli_tenant(config)
        async with served(config, key) as (_, api):
            messages = [
                {"from": "sender@postline.test", "to": [f"u{i}@{DOMAINS[i % 3]}"], "text": "hi"}
                for i in range(TOTAL)
            ]
            t0 = time.monotonic()
            r = await api.post("/v1/messages/batch", json={"messages": messages})
            assert r.status_code == 202, r.text
            seen = await wait_for(lambda: _rules_of_queues(api), timeout=10, interval=0.02)
            await wait_for(lambda: len(sim.report().accepted_pairs()) >= TOTAL, timeout=60)
            elapsed = time.monotonic() - t0
        assert sim.report().duplicate_count == 0
        return seen, elapsed
    finally:
        await sim.stop()


async def test_a_static_route_is_under_the_relay_rule(tmp_path: Path) -> None:
    rules, elapsed = await _run(tmp_path, [])
    print(f"\n{TOTAL} recipients through a route in {elapsed:.1f}s, rules {rules}")
    assert rules == {"relay"}
    assert elapsed < 30  # the catch-all's 120/min would take 100 s


async def test_a_rule_naming_the_route_host_comes_first(tmp_path: Path) -> None:
    mine = {"name": "my-relay", "mx": [RELAY], "connections": 2}
    rules, _ = await _run(tmp_path, [mine])
    assert rules == {"my-relay"}
