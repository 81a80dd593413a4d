"""The operator plane over HTTP, with the mail simulator: a timed suspension that ends by
itself, retry-now and bounce by stream and tag, and a tenant deleted (its keys refused
at once, its queued mail cancelled, its history kept), also with the CLI."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from postline.cli import app as cli_app
from postline.control.tokens import generate_token, hash_token
from postline.runtime import Node
from postline.sim.profiles import Profile
from postline.store.base import EventQuery
from support.e2e import domain, internet
from support.node import add_tenant, api_client, wait_for

# Deferred mail waits an hour unless an operator retries it now; the nodes' own scans are
# rare, so what happens on time is the node's doing, not a scan's.
SLOW = """
[retry]
first = "1h"
multiplier = 2.0
max_interval = "1h"
max_age = "1d"
[queue]
scan_interval = "30s"
"""


async def _admin_token(node: Node) -> str:
    secret = generate_token()
    await node.store.add_admin_token("ops", hash_token(secret), secret[:11])
    return secret


async def _audit(admin: Any) -> list[dict[str, Any]]:
    return list((await admin.get("/admin/v1/audit")).json()["entries"])


async def test_timed_suspension_ends_on_time_without_anyone_looking(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("plain.test")], node_extra=SLOW) as e:
        secret = await _admin_token(e.node)
        async with api_client(e.node, secret) as admin:
            asked = time.time()
            r = await admin.post(
                "/admin/v1/queues/suspend", json={"domain": "plain.test", "duration": "2s"}
            )
            assert r.status_code == 200, r.text
        until = datetime.fromisoformat(r.json()["until"].replace("Z", "+00:00")).timestamp()
        assert asked + 2 <= until + 0.001
        # No admin call from here on: only the store is read.
        await e.send(["a@plain.test", "b@plain.test"])
        await e.settle(2, timeout=15)
        assert (await e.counts()).get("delivered") == 2
        acme = await e.node.store.get_tenant(name="acme")
        assert acme is not None
        delivered = await e.node.store.events(EventQuery(tenant_id=acme.id, types=["delivered"]))
        # Held until its end, not before (the event's time is when the reply came).
        assert len(delivered) == 2 and all(ev.at >= until - 0.001 for ev in delivered)
        assert await e.node.store.queue_pauses() == []
        async with api_client(e.node, secret) as admin:
            entries = await _audit(admin)
        [lifted] = [a for a in entries if a["action"] == "queue.resume"]
        assert lifted["detail"]["expired"] is True and lifted["target"] == "*/plain.test"
        assert lifted["actor"] == {"kind": "node", "id": e.node.node_id}


async def test_retry_now_and_bounce_by_stream_and_tag(tmp_path: Path) -> None:
    specs = [domain("grey.test", Profile(greylist=1.0))]
    async with internet(tmp_path, specs, node_extra=SLOW) as e:
        store = e.node.store
        acme = await store.get_tenant(name="acme")
        assert acme is not None
        news = [
            await e.send(f"n{i}@grey.test", stream="broadcast", tags=["spring"]) for i in range(3)
        ]
        await e.send(["t1@grey.test", "t2@grey.test"], tags=["receipts"])
        await e.send("t3@grey.test")

        async def deferred() -> bool | None:
            return (await store.queue_stats(acme.id))[0].deferred == 6 or None

        await wait_for(deferred, timeout=20, interval=0.1)
        secret = await _admin_token(e.node)
        async with api_client(e.node, secret) as admin:
            r = await admin.post(
                "/admin/v1/queues/suspend", json={"tenant": acme.id, "stream": "broadcast"}
            )
            assert "whole queues" in r.json()["detail"]
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "stream", r.text
            r = await admin.post(
                "/admin/v1/queues/retry-now", json={"domain": "grey.test", "stream": " "}
            )
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "stream", r.text

            # Retry the receipts only: two recipients made due (and delivered: the domain
            # greylists each first attempt for 1 s), the rest waits an hour.
            await asyncio.sleep(1.1)
            r = await admin.post(
                "/admin/v1/queues/retry-now",
                json={"tenant": acme.id, "domain": "grey.test", "tag": "receipts"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["count"] == 2 and r.json()["tag"] == "receipts"

            async def receipts_delivered() -> list[str] | None:
                done = sorted(ev["recipient"] for ev in await e.events(type="delivered"))
                return done if len(done) >= 2 else None

            assert await wait_for(receipts_delivered, timeout=20, interval=0.1) == [
                "t1@grey.test",
                "t2@grey.test",
            ]
            [q] = await store.queue_stats(acme.id)
            assert q.depth == 4 and q.deferred == 4
            views = [await store.get_message(acme.id, m["id"]) for m in news]
            assert all(v and [x.attempts for x in v.recipients] == [1] for v in views)

            # Bounce the broadcast stream: three final bounces, the others still queued.
            r = await admin.post(
                "/admin/v1/queues/bounce",
                json={"domain": "grey.test", "stream": "broadcast", "reason": "campaign pulled"},
            )
            assert r.status_code == 200 and r.json()["count"] == 3, r.text
            bounced = await e.events(type="bounced")
            assert sorted(ev["recipient"] for ev in bounced) == [
                "n0@grey.test",
                "n1@grey.test",
                "n2@grey.test",
            ]
            assert (await store.queue_stats(acme.id))[0].depth == 1  # t3 alone
            entries = [a for a in await _audit(admin) if a["action"].startswith("queue.")]
            assert [(a["action"], a["target"]) for a in entries] == [
                ("queue.retry_now", f"{acme.id}/grey.test tag=receipts"),
                ("queue.bounce", "*/grey.test stream=broadcast"),
            ]
            assert entries[1]["detail"]["selector"]["stream"] == "broadcast"


async def test_delete_tenant_over_http_and_cli(tmp_path: Path) -> None:
    specs = [domain("grey.test", Profile(greylist=1.0)), domain("plain.test")]
    async with internet(tmp_path, specs, node_extra=SLOW, greylist_delay=30) as e:
        store = e.node.store
        beta_key = await add_tenant(e.node, "beta")
        beta = await store.get_tenant(name="beta")
        assert beta is not None
        body = {"from": "s@postline.test", "subject": "t", "text": "hi"}
        async with api_client(e.node, beta_key) as b_api:
            for to in (["b1@grey.test", "b2@grey.test"], ["b3@grey.test"]):
                r = await b_api.post("/v1/messages", json={**body, "to": to})
                assert r.status_code == 202, r.text
            tomorrow = datetime.now(UTC) + timedelta(days=1)
            later = {**body, "to": ["b4@plain.test"], "send_at": tomorrow.isoformat()}
            r = await b_api.post("/v1/messages", json=later)
            assert r.status_code == 202, r.text
            r = await b_api.post(
                "/v1/suppressions", json={"suppressions": [{"address": "x@plain.test"}]}
            )
            assert r.status_code in (200, 201), r.text

            async def deferred() -> bool | None:
                stats = {s.domain: s for s in await store.queue_stats(beta.id)}
                return (stats.get("grey.test") and stats["grey.test"].deferred == 3) or None

            await wait_for(deferred, timeout=20, interval=0.1)
            secret = await _admin_token(e.node)
            async with api_client(e.node, secret) as admin:
                r = await admin.delete(f"/admin/v1/tenants/{beta.id}")
                assert r.status_code == 200, r.text
                out = r.json()
                assert out["changed"] is True and out["name"] == "beta"
                assert out["cancelled"] == 4 and out["remaining"] == 0
                assert out["keys_revoked"] == 1 and out["suppressions_removed"] == 1
                # Refused at once on this node.
                r = await b_api.post("/v1/messages", json={**body, "to": ["b5@plain.test"]})
                assert r.status_code == 401, r.text

                events = await store.events(EventQuery(tenant_id=beta.id, types=["cancelled"]))
                assert sorted(ev.recipient or "" for ev in events) == [
                    "b1@grey.test",
                    "b2@grey.test",
                    "b3@grey.test",
                    "b4@plain.test",
                ]
                assert not await store.queue_stats(beta.id) or all(
                    s.depth == 0 for s in await store.queue_stats(beta.id)
                )
                assert (await admin.get(f"/admin/v1/tenants/{beta.id}")).status_code == 404
                names = [
                    t["name"] for t in (await admin.get("/admin/v1/tenants")).json()["tenants"]
                ]
                assert names == ["acme"]
                # Its messages stay for the retention period.
                kept = await store.get_message(None, events[0].message_id or "")
                assert kept is not None and kept.tenant_id == beta.id
                again = await admin.delete(f"/admin/v1/tenants/{beta.id}")
                assert again.status_code == 200 and again.json()["changed"] is False
                r = await admin.post("/admin/v1/tenants", json={"name": "beta"})
                assert r.status_code == 409 and "deleted" in r.json()["detail"], r.text
                r = await admin.delete("/admin/v1/tenants/tnt_nobody")
                assert r.status_code == 404

                # The other tenant is untouched: its mail goes.
                await e.send("a1@plain.test")
                await wait_for(lambda: _delivered(store, "a1@plain.test"), timeout=20, interval=0.1)

                # The CLI over HTTP: asks, or --yes.
                assert e.node.api_address is not None
                host, port = e.node.api_address
                env = {
                    "POSTLINE_URL": f"http://{host}:{port}",
                    "POSTLINE_ADMIN_TOKEN": secret,
                    "POSTLINE_CONFIG": "",
                }
                await add_tenant(e.node, "gamma")
                refused = await asyncio.to_thread(
                    CliRunner().invoke, cli_app, ["tenant", "delete", "gamma"], env=env, input="n\n"
                )
                assert refused.exit_code != 0
                assert await store.get_tenant(name="gamma") is not None
                assert (await store.get_tenant(name="gamma")).deleted_at is None  # type: ignore[union-attr]
                done = await asyncio.to_thread(
                    CliRunner().invoke,
                    cli_app,
                    ["tenant", "delete", "gamma", "--yes", "--json"],
                    env=env,
                )
                assert done.exit_code == 0, done.output
                assert json.loads(done.stdout)["changed"] is True
                gone = await store.get_tenant(name="gamma")
                assert gone is not None and gone.deleted_at is not None

                deletes = [a for a in await _audit(admin) if a["action"] == "tenant.delete"]
                assert [(a["target"], a["detail"]["changed"]) for a in deletes] == [
                    (beta.id, True),
                    (beta.id, False),
                    (gone.id, True),
                ]
                assert deletes[0]["detail"]["cancelled"] == 4


async def _delivered(store: Any, address: str) -> bool | None:
    acme = await store.get_tenant(name="acme")
    events = await store.events(EventQuery(tenant_id=acme.id, types=["delivered"]))
    return any(ev.recipient == address for ev in events) or None
