"""DNS failures: NXDOMAIN bounces 550 5.1.2 at once; SERVFAIL defers with 4.4.3 and is
retried until the domain resolves, then the mail is delivered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from postline.sim.profiles import DomainSpec, MXHostSpec
from support.e2e import domain, internet
from support.node import wait_for


async def test_nxdomain_bounces_without_a_connection(tmp_path: Path) -> None:
    gone = DomainSpec("gone.test", kind="nxdomain")
    async with internet(tmp_path, [gone, domain("ok.test")]) as net:
        sent = await net.send(["ann@gone.test", "bob@gone.test"])
        counts = await net.settle(2, timeout=10)
        assert counts == {"bounced": 2}

        bounced = await net.events(type="bounced")
        assert sorted(e["recipient"] for e in bounced) == ["ann@gone.test", "bob@gone.test"]
        for event in bounced:
            data = event["data"]
            assert (data["code"], data["enhanced"]) == (550, "5.1.2")
            assert data["command"] == "DNS"
            assert "NXDOMAIN" in data["text"]
            assert "gone.test" in data["text"]
        assert await net.events(type="deferred") == []

        msg = await net.message(sent["id"])
        assert msg["status"] == "bounced"
        assert [r["attempts"] for r in msg["recipients"]] == [1, 1]

        report = net.sim.report()
        assert report.connections == 0
        assert report.accepted == 0
        assert net.sim.dns.count("gone.test", "MX") >= 1


async def test_servfail_is_deferred_retried_and_delivered_once_dns_answers(
    tmp_path: Path,
) -> None:
    flaky = DomainSpec("flaky.test", kind="servfail")
    async with internet(tmp_path, [flaky, domain("ok.test")]) as net:
        sent = await net.send("ann@flaky.test")

        async def deferred_twice() -> dict[str, Any] | None:
            msg = await net.message(sent["id"])
            return msg if msg["recipients"][0]["attempts"] >= 2 else None

        msg = await wait_for(deferred_twice, timeout=8, interval=0.1)
        rcpt = msg["recipients"][0]
        assert rcpt["status"] in ("deferred", "sending")
        assert await net.counts() == {"queued": 1}
        deferrals = [e for e in rcpt["events"] if e["type"] == "deferred"]
        assert len(deferrals) >= 2
        for e in deferrals:
            assert (e["code"], e["enhanced"]) == (451, "4.4.3")
            assert e["text"].startswith("MX lookup of flaky.test failed")
            assert "SERVFAIL" in e["text"]
            assert "mx" not in e
        events = await net.events(type="deferred")
        assert all(e["data"]["command"] == "DNS" for e in events)
        assert [e["data"]["attempt"] for e in events][:2] == [1, 2]
        assert net.sim.report().connections == 0

        # The domain comes back, served by a mail exchanger that is already running.
        net.sim.add_domain(DomainSpec("flaky.test", mx=(MXHostSpec("mx1.ok.test"),)))
        net.sim.zone.servfail.discard("flaky.test")

        counts = await net.settle(1, timeout=15)
        assert counts == {"delivered": 1}
        msg = await net.message(sent["id"])
        rcpt = msg["recipients"][0]
        kinds = [e["type"] for e in rcpt["events"]]
        assert kinds[0] == "accepted"
        assert kinds[-1] == "delivered"
        assert set(kinds[1:-1]) == {"deferred"}
        assert rcpt["attempts"] == len(kinds) - 1
        assert rcpt["events"][-1]["mx"] == "mx1.ok.test"
        report = net.sim.report()
        assert report.accepted_by_domain == {"flaky.test": 1}
        assert report.records[0].message_id == sent["message_id"]
        assert report.duplicate_count == 0
