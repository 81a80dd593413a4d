"""The operator's queue view and actions over HTTP, with the mail simulator: two tenants'
mail to a greylisting domain and to a plain one, held, retried and bounced per tenant."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from postline.control.tokens import generate_token, hash_token
from postline.sim.profiles import Profile
from support.e2e import domain, internet
from support.node import add_tenant, api_client, wait_for

# Deferred mail waits an hour unless an operator retries it now.
SLOW_RETRY = """
[retry]
first = "1h"
multiplier = 2.0
max_interval = "1h"
max_age = "1d"
[queue]
scan_interval = "15s"
"""


async def _depths(api: Any) -> dict[str, int]:
    page = (await api.get("/v1/queues")).json()
    return {q["domain"]: q["depth"] for q in page["queues"] if q["depth"]}


async def test_operator_suspends_retries_and_bounces_per_tenant(tmp_path: Path) -> None:
    specs = [domain("grey.test", Profile(greylist=0.5)), domain("plain.test")]
    async with internet(tmp_path, specs, node_extra=SLOW_RETRY, greylist_delay=0.5) as e:
        store = e.node.store
        acme = await store.get_tenant(name="acme")
        beta_key = await add_tenant(e.node, "beta")
        beta = await store.get_tenant(name="beta")
        assert acme is not None and beta is not None
        secret = generate_token()
        await store.add_admin_token("ops", hash_token(secret), secret[:11])
        async with api_client(e.node, secret) as admin, api_client(e.node, beta_key) as b_api:
            r = await admin.post(
                "/admin/v1/queues/suspend", json={"tenant": beta.id, "domain": "plain.test"}
            )
            assert r.status_code == 200, r.text
            assert r.json()["count"] == 0
            await e.send(["a1@plain.test", "a2@grey.test"])
            body = {"from": "s@postline.test", "subject": "t", "text": "hi"}
            for to in (["b1@plain.test"], ["b2@grey.test", "b3@grey.test"]):
                assert (
                    await b_api.post("/v1/messages", json={**body, "to": to})
                ).status_code == 202

            async def deferred() -> bool | None:
                page = (await admin.get("/admin/v1/queues", params={"domain": "grey.test"})).json()
                [q] = page["queues"]
                if q["deferred"] != 3 or q["due"] != 0:
                    return None
                # Acme's plain mail went; beta's is held by the suspension.
                return (await store.state_counts()).get("delivered") == 1 or None

            # Acme's plain mail goes (its outcome may be written after the greylisted
            # ones); beta's is held by the suspension.
            await wait_for(deferred, timeout=20, interval=0.1)
            page = (await admin.get("/admin/v1/queues")).json()
            by = {q["domain"]: q for q in page["queues"]}
            assert list(by) == ["grey.test", "plain.test"] and page["next_after"] is None
            assert {t["tenant"]: t["depth"] for t in by["grey.test"]["tenants"]} == {
                acme.id: 1,
                beta.id: 2,
            }
            [held] = by["plain.test"]["tenants"]
            assert held["tenant"] == beta.id and held["suspended"]["reason"] == "operator"
            assert by["plain.test"]["suspended"] is True
            assert await _depths(b_api) == {"grey.test": 2, "plain.test": 1}

            # Retry now: acme's greylisted mail goes at once, beta's keeps waiting. (After
            # the greylisting delay: an attempt before it is greylisted again.)
            await asyncio.sleep(0.6)
            r = await admin.post(
                "/admin/v1/queues/retry-now", json={"tenant": acme.id, "domain": "grey.test"}
            )
            assert r.json()["count"] == 1

            async def acme_done() -> bool | None:
                return True if not await _depths(e.api) else None

            await wait_for(acme_done, timeout=20, interval=0.1)
            assert (await store.state_counts()).get("delivered") == 2
            assert await _depths(b_api) == {"grey.test": 2, "plain.test": 1}

            # Bounce beta's greylisted mail: operator bounces, no suppression.
            r = await admin.post(
                "/admin/v1/queues/bounce",
                json={"tenant": beta.id, "domain": "grey.test", "reason": "retired"},
            )
            assert r.json()["count"] == 2
            events = (await b_api.get("/v1/events", params={"type": "bounced"})).json()["events"]
            assert sorted(ev["recipient"] for ev in events) == ["b2@grey.test", "b3@grey.test"]
            assert {ev["data"]["category"] for ev in events} == {"operator"}
            assert await store.suppressed(beta.id, ["b2@grey.test"], now=0) == {}
            assert await _depths(b_api) == {"plain.test": 1}

            # Resume: beta's held mail is delivered.
            r = await admin.post(
                "/admin/v1/queues/resume", json={"tenant": beta.id, "domain": "plain.test"}
            )
            assert r.json()["count"] == 1
            await e.settle(5, timeout=20)
            assert await _depths(b_api) == {}
            actions = [a["action"] for a in (await admin.get("/admin/v1/audit")).json()["entries"]]
            assert [a for a in actions if a.startswith("queue.")] == [
                "queue.suspend",
                "queue.retry_now",
                "queue.bounce",
                "queue.resume",
            ]
