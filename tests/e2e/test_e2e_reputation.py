"""Reputation guardrails end to end: a tenant whose mail hard-bounces is warned, then
paused; its new mail is refused over HTTP and SMTP with the reason, its queued mail is
held (not delivered, not dropped) until an operator resumes it, and another tenant is
unaffected throughout."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from postline.reputation import resume_tenant
from postline.sim.profiles import Profile
from support import pgserver
from support.e2e import E2E, FAST_RETRY, domain, internet
from support.node import add_tenant, api_client, wait_for

pg_server = pgserver.pg_server
pg_dsn = pgserver.pg_dsn

REPUTATION = """
[reputation]
window = "10m"
min_volume = 20
evaluate_interval = "200ms"
flush_interval = "100ms"
"""
BOUNCE_DOMAIN = "bounce.postline.test"
BOUNCE = f'[bounce]\ndomain = "{BOUNCE_DOMAIN}"\nsecret = "e2e-verp-secret"\n'


async def kinds(net: E2E) -> list[str]:
    wanted = "reputation_warning,reputation_recovered,tenant_paused,tenant_resumed"
    return [e["type"] for e in await net.events(type=wanted)]


async def status_of(net: E2E, message_id: str) -> list[str]:
    return [r["status"] for r in (await net.message(message_id))["recipients"]]


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def smtp_mail_from(net: E2E, key: str) -> tuple[int, str]:
    assert net.node.submission_address is not None
    host, port = net.node.submission_address
    with smtplib.SMTP(host, port, timeout=10) as s:
        s.ehlo("client.test")
        s.starttls(context=_tls())
        s.ehlo("client.test")
        s.login("acme", key)
        code, text = s.mail("orders@shop.test")
        return code, text.decode()


async def test_a_bouncing_tenant_is_warned_paused_held_and_resumed(tmp_path: Path) -> None:
    grey = domain("grey.test", Profile(name="grey", greylist=4.0))
    async with internet(
        tmp_path, [domain("ok.test"), grey], node_extra=FAST_RETRY + REPUTATION
    ) as net:
        key = net.api.headers["Authorization"].removeprefix("Bearer ")
        other_key = await add_tenant(net.node, "other")
        t0 = time.time()
        # Mail that will still be queued when the pause comes: greylisted (first attempt
        # deferred) and scheduled a few seconds ahead.
        greylisted = (await net.send("ann@grey.test"))["id"]
        send_at = t0 + 5.0
        due = datetime.fromtimestamp(send_at, UTC).isoformat()
        scheduled = (await net.send("bob@ok.test", send_at=due))["id"]
        await wait_for(lambda: _deferred(net, greylisted), timeout=10)

        # 19 delivered + 1 hard bounce = 5 % over 20 recipients: the warning threshold.
        await net.send_many([f"user{i}@ok.test" for i in range(19)] + ["unknown0@ok.test"])
        await wait_for(lambda: _has(net, "reputation_warning"), timeout=10)
        assert await kinds(net) == ["reputation_warning"]
        rep = (await net.api.get("/v1/reputation")).json()
        assert rep["status"] == "warned"
        assert "hard-bounce rate 5 % (1 of 20" in rep["reason"]

        # More hard bounces: paused.
        await net.send_many([f"unknown{i}@ok.test" for i in range(1, 9)])
        await wait_for(lambda: _has(net, "tenant_paused"), timeout=10)
        paused_at = time.time()
        assert paused_at < send_at, "the pause must come before the scheduled mail is due"
        assert await kinds(net) == ["reputation_warning", "tenant_paused"]
        [paused] = await net.events(type="tenant_paused")
        assert paused["data"]["bounced"] == 9 and paused["data"]["delivered"] == 19
        assert paused["data"]["window"] == "10m"

        # New mail is refused with the reason, over HTTP ...
        r = await net.api.post(
            "/v1/messages",
            json={"from": "sender@postline.test", "to": ["carl@ok.test"], "text": "hi"},
        )
        assert r.status_code == 403, r.text
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["type"] == "urn:postline:problem:sending-paused"
        assert problem["title"] == "Sending paused"
        detail = problem["detail"]
        assert "Sending is paused for tenant 'acme'" in detail
        assert "hard-bounce rate 32.1 % (9 of 28 delivered or hard-bounced recipients)" in detail
        assert "over the last 10m is at or above the pause threshold of 10 %" in detail
        assert "postline tenant resume acme" in problem["fix"]
        batch = await net.api.post(
            "/v1/messages/batch",
            json={"messages": [{"from": "s@postline.test", "to": ["d@ok.test"], "text": "x"}]},
        )
        assert batch.status_code == 403
        # ... and over SMTP submission, at MAIL FROM.
        code, text = await asyncio.to_thread(smtp_mail_from, net, key)
        assert code == 550
        assert text.startswith("5.7.1 Sending paused for tenant acme since ")
        assert "hard-bounce rate 32.1 %" in text and "postline tenant resume acme" in text

        rep = (await net.api.get("/v1/reputation")).json()
        assert (rep["status"], rep["changed_by"], rep["judged"], rep["window"]) == (
            "paused",
            "reputation",
            True,
            "10m",
        )
        assert rep["counts"] == {"delivered": 19, "bounced": 9, "complained": 0}
        assert abs(rep["rates"]["bounce"] - 9 / 28) < 1e-9
        assert rep["thresholds"]["bounce"] == {"warn": 0.05, "pause": 0.1}
        assert [s["stream"] for s in rep["streams"]] == ["transactional"]
        queues = {q["domain"]: q for q in (await net.api.get("/v1/queues")).json()["queues"]}
        assert queues["grey.test"]["paused"] and queues["ok.test"]["paused"]
        metrics = (await net.api.get("/metrics")).text
        assert 'postline_tenant_paused{tenant="acme"} 1.0' in metrics
        assert 'postline_reputation_bounce_rate{tenant="acme"} 0.32' in metrics

        # Another tenant sends and delivers as usual.
        async with api_client(net.node, other_key) as other:
            r = await other.post(
                "/v1/messages",
                json={"from": "s@other.test", "to": ["eve@ok.test"], "text": "hi"},
            )
            assert r.status_code == 202, r.text
            theirs = r.json()["id"]

            async def delivered() -> bool:
                view = (await other.get(f"/v1/messages/{theirs}")).json()
                return [x["status"] for x in view["recipients"]] == ["delivered"]

            await wait_for(delivered, timeout=10)
            assert (await other.get("/v1/reputation")).json()["status"] == "ok"

        # The held mail stays queued past the time it would have been sent.
        await asyncio.sleep(max(0.0, send_at + 1.5 - time.time()))
        assert await status_of(net, scheduled) in (["queued"], ["scheduled"])
        assert await status_of(net, greylisted) == ["deferred"]
        accepted = {rcpt for _, rcpt in net.sim.report().accepted_pairs()}
        assert not accepted & {"ann@grey.test", "bob@ok.test"}

        # An operator resumes the tenant (what 'postline tenant resume acme' does).
        tenant = await net.node.store.get_tenant(name="acme")
        assert tenant is not None
        resumed = await resume_tenant(net.node.store, tenant)
        assert resumed is not None
        await net.send("carl@ok.test")
        await wait_for(lambda: _delivered(net, scheduled), timeout=10)
        await wait_for(lambda: _delivered(net, greylisted), timeout=10)
        # Judged afresh: the old bounces do not pause it again.
        await asyncio.sleep(0.6)
        rep = (await net.api.get("/v1/reputation")).json()
        assert (rep["status"], rep["changed_by"], rep["judged"]) == ("ok", "operator", False)
        assert rep["counts"]["bounced"] == 0
        assert await kinds(net) == ["reputation_warning", "tenant_paused", "tenant_resumed"]
        metrics = (await net.api.get("/metrics")).text
        assert 'postline_tenant_paused{tenant="acme"} 0.0' in metrics


async def _has(net: E2E, kind: str) -> bool:
    return kind in await kinds(net)


async def _deferred(net: E2E, message_id: str) -> bool:
    return await status_of(net, message_id) == ["deferred"]


async def _delivered(net: E2E, message_id: str) -> Any:
    return await status_of(net, message_id) == ["delivered"]


async def test_complaints_pause_a_tenant_on_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    """Complaints come back from the sim's feedback loop to the inbound server; the
    complaint rate (per stream, in the fleet store) pauses the tenant."""
    profile = Profile(name="complainers", complaint_rate=1.0, feedback_delay=0.1)
    node = FAST_RETRY + REPUTATION.replace("min_volume = 20", "min_volume = 10") + BOUNCE
    async with internet(
        tmp_path, [domain("inbox.test", profile)], node_extra=node, store=pg_dsn
    ) as net:
        assert net.node.inbound_address is not None
        host, port = net.node.inbound_address
        net.sim.set_feedback_to(f"{host}:{port}")
        net.sim.set_fbl_address(f"fbl@{BOUNCE_DOMAIN}")
        for i in range(10):
            await net.send(f"user{i}@inbox.test", stream="newsletter")
        await wait_for(lambda: _has(net, "tenant_paused"), timeout=20)
        [paused] = await net.events(type="tenant_paused")
        data = paused["data"]
        assert data["previous"] == "ok" and data["by"] == "reputation"
        assert data["complained"] >= 1 and data["bounced"] == 0
        assert "complaint rate" in data["reason"]
        assert "pause threshold of 0.5 %" in data["reason"]
        assert set(data["streams"]) == {"newsletter"}
        r = await net.api.post(
            "/v1/messages",
            json={"from": "sender@postline.test", "to": ["x@inbox.test"], "text": "hi"},
        )
        assert r.status_code == 403
        assert "complaint rate" in r.json()["detail"]
        rep = (await net.api.get("/v1/reputation")).json()
        assert rep["status"] == "paused"
        assert [s["stream"] for s in rep["streams"]] == ["newsletter"]
