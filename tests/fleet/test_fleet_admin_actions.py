"""Fleet mode: two nodes on one PostgreSQL. An operator acts on node A's admin API (A
does not deliver); node B, which delivers, obeys:

* a domain suspended on A is not delivered by B (its mail waits), and is again once the
  domain is resumed on A;
* mail bounced on A while suspended is final at once: ``bounced`` with category
  ``operator``, never sent by B;
* a tenant paused on A is refused by B (403 on the API) within B's ``[reputation]
  evaluate_interval``, and accepted again once resumed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from support import pgserver
from support.admin_node import FAST_FLEET, operator_node
from support.e2e import E2E, domain, internet
from support.node import api_client, wait_for

pg_server = pgserver.pg_server
pg_dsn = pgserver.pg_dsn


async def _status(e: E2E, message_id: str) -> str:
    [r] = (await e.message(message_id))["recipients"]
    return str(r["status"])


async def test_admin_actions_on_one_node_are_obeyed_by_another(tmp_path: Path, pg_dsn: str) -> None:
    (tmp_path / "b").mkdir()
    async with (
        internet(
            tmp_path / "b",
            [domain("plain.test"), domain("other.test")],
            store=pg_dsn,
            node_extra=FAST_FLEET,
        ) as b,
        operator_node(tmp_path / "a", pg_dsn) as (a, secret),
    ):
        assert b.node.engine is not None
        first = await b.send("one@plain.test")
        await wait_for(lambda: _delivered(b, first["id"]), timeout=20)
        async with api_client(a, secret) as admin:
            # Suspend on A: B holds the domain's mail, and sends other domains'.
            r = await admin.post(
                "/admin/v1/queues/suspend", json={"domain": "plain.test", "duration": "1h"}
            )
            assert r.status_code == 200, r.text
            await asyncio.sleep(1.0)  # two of B's scans
            held = await b.send("two@plain.test")
            other = await b.send("three@other.test")
            await wait_for(lambda: _delivered(b, other["id"]), timeout=20)
            await asyncio.sleep(2.0)
            assert await _status(b, held["id"]) == "queued"

            # Bounce on A: final at once, never sent.
            r = await admin.post(
                "/admin/v1/queues/bounce",
                json={"domain": "plain.test", "reason": "customer asked"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["count"] >= 1, r.text
            [rcpt] = (await b.message(held["id"]))["recipients"]
            assert rcpt["status"] == "bounced", rcpt
            bounced = await b.events(type="bounced")
            assert [e["data"].get("category") for e in bounced] == ["operator"], bounced

            # Resume on A: B delivers the domain again.
            r = await admin.post("/admin/v1/queues/resume", json={"domain": "plain.test"})
            assert r.status_code == 200, r.text
            again = await b.send("four@plain.test")
            await wait_for(lambda: _delivered(b, again["id"]), timeout=20)

            # Pause the tenant on A: B refuses its mail, then takes it again.
            tenant_id = (await a.store.list_tenants())[0].id
            r = await admin.post(f"/admin/v1/tenants/{tenant_id}/pause", json={})
            assert r.status_code == 200, r.text
            t0 = time.monotonic()
            body = {"from": "sender@postline.test", "to": ["five@other.test"],
                    "subject": "s", "text": "t"}  # fmt: skip
            # Other nodes learn of a pause at their next evaluation of the tenants.
            follow = b.node.config.reputation.evaluate_interval + 5.0
            refused = await wait_for(lambda: _answered(b, body, 403), timeout=follow, interval=0.1)
            print(f"\ntenant paused on A: refused by B after {time.monotonic() - t0:.2f} s")
            assert refused
            r = await admin.post(f"/admin/v1/tenants/{tenant_id}/resume")
            assert r.status_code == 200, r.text
            t0 = time.monotonic()
            await wait_for(lambda: _answered(b, body, 202), timeout=10, interval=0.1)
            print(f"tenant resumed on A: accepted by B after {time.monotonic() - t0:.2f} s")


async def _delivered(e: E2E, message_id: str) -> bool:
    return await _status(e, message_id) == "delivered"


async def _answered(e: E2E, body: dict[str, object], status: int) -> bool:
    r = await e.api.post("/v1/messages", json=body)
    return r.status_code == status
