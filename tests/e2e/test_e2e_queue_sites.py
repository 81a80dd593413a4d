"""The operator's queue view per MX site, against a node delivering to the simulator.

Two domains whose mail exchangers are the same provider's (``mx1.bigmail.test``, a rule
of ours with 2 connections and 10 messages a second) and one domain of its own, all
deferring every attempt: ``GET /admin/v1/queues/sites`` gives the two one row, with their
depth summed and the rule's limits and live throttle state, and the third a row of the
catch-all rule; ``postline queue sites`` prints the same. A node that never routed a
domain looks it up on demand within the view's time bound. With two worker processes,
either answers for every domain.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from postline.cli import app as cli_app
from postline.control.tokens import generate_token, hash_token
from postline.schedule.shares import WorkerShare
from postline.sim.config import SimConfig
from postline.sim.profiles import DomainSpec, MXHostSpec, Profile
from postline.sim.runner import Simulator
from support.e2e import domain, internet, sim_node_config
from support.node import api_client, cli_tenant, served, wait_for

DEFERS = Profile(name="defers", transient_rate=1.0)
BIG = (MXHostSpec("mx1.bigmail.test"),)
DOMAINS = [
    DomainSpec("a.bigmail-customer.test", mx=BIG, profile=DEFERS),
    DomainSpec("b.bigmail-customer.test", mx=BIG, profile=DEFERS),
    domain("solo.test", DEFERS),
]
RULES = (
    {"name": "default", "connections": 10},
    {
        "name": "bigmail",
        "mx": ["*.bigmail.test"],
        "connections": 2,
        "messages": 600,
        "period": "1m",
    },
)


async def _sites(admin: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await admin.get("/admin/v1/queues/sites", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_domains_of_one_mx_site_share_a_row(tmp_path: Path) -> None:
    async with internet(tmp_path, DOMAINS, rules=RULES) as e:
        secret = generate_token()
        await e.node.store.add_admin_token("ops", hash_token(secret), secret[:11])
        for i in range(3):
            await e.send(f"u{i}@a.bigmail-customer.test")
        for i in range(2):
            await e.send(f"u{i}@b.bigmail-customer.test")
        await e.send("u@solo.test")
        async with api_client(e.node, secret) as admin:

            async def deferred_everywhere() -> dict[str, Any] | None:
                view = await _sites(admin)
                return (
                    view
                    if view["sites"]
                    and all(s["deferred"] == s["depth"] for s in view["sites"])
                    and sum(s["depth"] for s in view["sites"]) == 6
                    else None
                )

            view = await wait_for(deferred_everywhere, timeout=30, interval=0.2)
            assert view["unrouted"] == [] and view["domains"] == 3
            assert view["worker"]["index"] == 0 and view["worker"]["count"] == 1
            big, solo = view["sites"]  # deepest first

            assert big["provider"] == "bigmail" and big["rule"] == "bigmail"
            assert big["scope"] == "rule" and big["relay"] is False
            assert big["domains"] == 2
            assert big["domain_names"] == ["a.bigmail-customer.test", "b.bigmail-customer.test"]
            assert big["mx_sites"] == ["mx1.bigmail.test"]
            assert (big["depth"], big["deferred"]) == (5, 5)
            assert big["oldest_age"] is not None and big["oldest_age"] > 0
            assert (big["connection_limit"], big["rate_limit"]) == (2, 10.0)
            [state] = big["throttle"]
            assert state["source"] is None and not state["unavailable"]
            assert state["key"].startswith("bigmail:")
            assert state["connection_limit"] == 2 and state["rate_limit"] == 10.0
            assert 0 <= state["connections"] <= 2
            assert 0 < state["rate_factor"] <= 1.0
            [tenant] = big["tenants"]
            assert (tenant["depth"], tenant["domains"], tenant["suspended"]) == (5, 2, 0)

            assert solo["rule"] == "default" and solo["domains"] == 1 and solo["depth"] == 1
            assert solo["provider"] == "default:site=mx1.solo.test"
            assert solo["connection_limit"] == 10
            assert solo["throttle"][0]["key"].startswith("default:site=mx1.solo.test:")

            # A suspension of one domain shows on its site's row.
            r = await admin.post(
                "/admin/v1/queues/suspend", json={"domain": "b.bigmail-customer.test"}
            )
            assert r.status_code == 200, r.text
            held = (await _sites(admin))["sites"][0]
            assert held["provider"] == "bigmail" and held["suspended"] == 1

            # The per-domain view is unchanged by all this.
            plain = (await admin.get("/admin/v1/queues")).json()
            assert [q["domain"] for q in plain["queues"]] == [
                "a.bigmail-customer.test",
                "b.bigmail-customer.test",
                "solo.test",
            ]

            # Routes the worker does not know: listed apart without resolve, looked up
            # within the time bound with it (the next view finds them either way).
            engine = e.node.engine
            assert engine is not None
            engine.routes.table.clear()
            bare = await _sites(admin, resolve="false")
            assert bare["sites"] == []
            assert {u["domain"]: u["reason"] for u in bare["unrouted"]} == {
                "a.bigmail-customer.test": "unknown",
                "b.bigmail-customer.test": "unknown",
                "solo.test": "unknown",
            }
            assert sum(u["depth"] for u in bare["unrouted"]) == 6
            engine.routes.table.clear()
            again = await _sites(admin)
            assert again["unrouted"] == []
            assert [(s["provider"], s["domains"]) for s in again["sites"]] == [
                ("bigmail", 2),
                ("default:site=mx1.solo.test", 1),
            ]

            # Paged: one domain per page, each page grouped on its own.
            first = await _sites(admin, limit=1)
            assert first["domains"] == 1 and first["next_after"] == "a.bigmail-customer.test"
            assert [(s["provider"], s["depth"]) for s in first["sites"]] == [("bigmail", 3)]

            # The command line prints the same rows.
            env = {
                "POSTLINE_URL": str(admin.base_url),
                "POSTLINE_ADMIN_TOKEN": secret,
                "POSTLINE_CONFIG": "",
            }
            result = await asyncio.to_thread(
                CliRunner().invoke, cli_app, ["queue", "sites"], env=env
            )
            assert result.exit_code == 0, result.output
            out = result.stdout
            assert "bigmail: a.bigmail-customer.test, b.bigmail-customer.test\n" in out
            assert "default:site=mx1.solo.test: solo.test\n" in out
            assert re.search(r"^bigmail\s+│ bigmail\s+│ 2\s+│ 5\s+│", out, re.M), out
            assert "worker 1 of 1" in result.stdout


async def _admin_token(config: Path) -> str:
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli_app,
        ["admin", "token", "create", "--config", str(config)],
        env={"POSTLINE_URL": ""},
    )
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()[-1]


async def test_either_worker_of_a_node_answers_for_the_whole_node(tmp_path: Path) -> None:
    """``[node] workers = 2``: the four domains are split over the workers by hash, and
    whichever worker takes the request answers with all of them in one row (it looks up
    the routes it does not know) and says it is the one that answered."""
    names = [f"d{i}.bigmail-customer.test" for i in range(4)]
    assert len({WorkerShare(0, 2).owner(n) for n in names}) == 2  # both workers own some
    specs = [DomainSpec(n, mx=BIG, profile=DEFERS) for n in names]
    sim = Simulator(SimConfig(domains=tuple(specs), seed=3))
    await sim.start()
    try:
        extra = '[node]\nworkers = 2\nshutdown_timeout = "5s"'
        config = sim_node_config(
            tmp_path, sim, RULES, lease_time=5, scan_interval="500ms", extra=extra
        )
        key = await cli_tenant(config)
        secret = await _admin_token(config)
        async with served(config, key, 40.0) as (_, api):
            r = await api.post(
                "/v1/messages/batch",
                json={
                    "messages": [
                        {"from": "s@postline.test", "to": [f"u@{n}"], "text": "hi"} for n in names
                    ]
                },
            )
            assert r.status_code == 202, r.text
            answered: dict[int, dict[str, Any]] = {}
            for _ in range(40):
                # A new connection each time: the kernel spreads them over the workers.
                async with httpx.AsyncClient(
                    base_url=str(api.base_url),
                    headers={"Authorization": f"Bearer {secret}"},
                    timeout=30,
                ) as admin:
                    view = await _sites(admin)
                if view["domains"] == 4 and not view["unrouted"]:
                    answered[view["worker"]["index"]] = view
                if len(answered) == 2:
                    break
            assert sorted(answered) == [0, 1]
            for view in answered.values():
                assert view["worker"]["count"] == 2
                [row] = view["sites"]
                assert (row["provider"], row["domains"], row["depth"]) == ("bigmail", 4, 4)
                [state] = row["throttle"]
                assert state["connection_limit"] == 2 and not state["unavailable"]
            assert answered[0]["worker"]["node"] != answered[1]["worker"]["node"]
    finally:
        await sim.stop()
