"""Reroutes over real HTTP: a destination's mail goes to a second loopback sink while it
is rerouted, and back to its MX hosts (the mail simulator) after a resume, after a
DELETE and after the reroute's time is up; each step is audited and shown in the queue
view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from postline.control.tokens import generate_token, hash_token
from postline.sim.sink import Sink
from support.e2e import E2E, domain, internet
from support.node import api_client, wait_for


async def _delivered_via(e: E2E, to: str) -> str:
    """Send one message to ``to``; the host that took it (its recipient's ``mx``)."""
    sent = await e.send(to)

    async def done() -> str | None:
        [r] = (await e.message(sent["id"]))["recipients"]
        return str(r["last_reply"]["mx"]) if r["status"] == "delivered" else None

    result: str = await wait_for(done, timeout=20, interval=0.05)
    return result


async def test_reroute_sends_a_domain_to_a_relay_until_resumed_deleted_or_expired(
    tmp_path: Path,
) -> None:
    sink = Sink()
    host, port = await sink.start("127.0.0.1")
    try:
        async with internet(tmp_path, [domain("plain.test"), domain("other.test")]) as e:
            secret = generate_token()
            await e.node.store.add_admin_token("ops", hash_token(secret), secret[:11])
            async with api_client(e.node, secret) as admin:
                mx = await _delivered_via(e, "a@plain.test")
                assert mx != host and sink.stats.recipients == 0

                async def reroute(**extra: Any) -> dict[str, Any]:
                    body = {"domain": "plain.test", "host": host, "port": port, **extra}
                    r = await admin.post("/admin/v1/queues/reroute", json=body)
                    assert r.status_code == 201, r.text
                    return dict(r.json())

                first = await reroute(duration="1h", reason="mx maintenance")
                assert first["domain"] == "plain.test" and first["provider"] is None
                assert await _delivered_via(e, "b@plain.test") == host
                assert sink.stats.recipients == 1
                # Other domains keep their route.
                assert await _delivered_via(e, "c@other.test") != host
                assert sink.stats.recipients == 1

                # The queue view lists it (the domain has nothing queued: top level).
                view = (await admin.get("/admin/v1/queues")).json()
                assert [(r["id"], r["host"], r["port"]) for r in view["reroutes"]] == [
                    (first["id"], host, port)
                ]
                one = (await admin.get("/admin/v1/queues", params={"domain": "plain.test"})).json()
                assert one["queues"][0]["rerouted"]["id"] == first["id"]

                # Resume of the domain ends it.
                r = await admin.post("/admin/v1/queues/resume", json={"domain": "plain.test"})
                assert r.status_code == 200, r.text
                assert (await admin.get("/admin/v1/queues")).json()["reroutes"] == []
                assert await _delivered_via(e, "d@plain.test") == mx

                # DELETE ends it.
                second = await reroute(duration="1h")
                assert await _delivered_via(e, "e@plain.test") == host
                r = await admin.delete(f"/admin/v1/queues/reroute/{second['id']}")
                assert r.status_code == 200 and r.json()["id"] == second["id"]
                assert await _delivered_via(e, "f@plain.test") == mx
                gone = await admin.delete(f"/admin/v1/queues/reroute/{second['id']}")
                assert gone.status_code == 404
                assert gone.headers["content-type"] == "application/problem+json"

                # Expiry ends it: the node switches back when its time is up.
                await reroute(duration="2s")
                assert await _delivered_via(e, "g@plain.test") == host

                async def back() -> bool:
                    return not (await admin.get("/admin/v1/queues")).json()["reroutes"]

                await wait_for(back, timeout=10, interval=0.2)
                assert await _delivered_via(e, "h@plain.test") == mx
                assert sink.stats.recipients == 3

                entries = (await admin.get("/admin/v1/audit")).json()["entries"]
                actions = [(a["action"], a["detail"].get("expired")) for a in entries]
                assert actions == [
                    ("queue.reroute", None),
                    ("queue.reroute_end", None),
                    ("queue.resume", None),
                    ("queue.reroute", None),
                    ("queue.reroute_end", None),
                    ("queue.reroute", None),
                    ("queue.reroute_end", True),
                ]
                assert entries[0]["detail"]["reason"] == "mx maintenance"
    finally:
        await sink.stop()


async def test_reroute_refuses_what_it_cannot_honour(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("plain.test")]) as e:
        secret = generate_token()
        await e.node.store.add_admin_token("ops", hash_token(secret), secret[:11])
        async with api_client(e.node, secret) as admin:
            cases: list[tuple[dict[str, Any], str]] = [
                ({"host": "127.0.0.1", "duration": "1h"}, "domain"),
                (
                    {"domain": "a.test", "provider": "google", "host": "h", "duration": "1h"},
                    "domain",
                ),
                ({"domain": "a.test", "host": "127.0.0.1", "duration": "soon"}, "duration"),
                ({"domain": "a.test", "host": "127.0.0.1", "duration": "60d"}, "duration"),
                ({"domain": "a.test", "host": "not a host", "duration": "1h"}, "host"),
                ({"domain": "a.test", "host": "h.test", "port": 0, "duration": "1h"}, "port"),
            ]
            for body, field in cases:
                r = await admin.post("/admin/v1/queues/reroute", json=body)
                assert r.status_code == 422, (body, r.text)
                problem = r.json()
                assert problem["fix"], problem
                assert field in r.text, (field, problem)
            # A provider selects reroutes only, not queues.
            r = await admin.post("/admin/v1/queues/suspend", json={"provider": "google"})
            assert r.status_code == 422
            r = await admin.post(
                "/admin/v1/queues/resume", json={"provider": "google", "tenant": "x"}
            )
            assert r.status_code == 422 and "alone" in r.json()["detail"]
