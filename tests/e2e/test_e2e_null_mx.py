"""Null MX (RFC 7505): the recipient bounces 556 5.1.10 from DNS alone, no connection."""

from __future__ import annotations

from pathlib import Path

from postline.sim.profiles import DomainSpec
from support.e2e import domain, internet


async def test_null_mx_domain_bounces_without_a_connection(tmp_path: Path) -> None:
    null = DomainSpec("nullmx.test", kind="null_mx")
    ok = domain("ok.test")
    async with internet(tmp_path, [null, ok]) as net:
        sent = await net.send(["ann@nullmx.test", "bob@ok.test"])
        counts = await net.settle(2, timeout=10)
        assert counts == {"bounced": 1, "delivered": 1}

        bounced = await net.events(type="bounced")
        assert len(bounced) == 1
        event = bounced[0]
        assert event["message_id"] == sent["id"]
        assert event["recipient"] == "ann@nullmx.test"
        data = event["data"]
        assert (data["code"], data["enhanced"]) == (556, "5.1.10")
        assert data["command"] == "DNS"
        assert data["synthetic"] is True
        assert "null MX" in data["text"]
        assert "nullmx.test" in data["text"]
        assert "mx" not in data  # no mail exchanger was tried
        assert data["attempt"] == 1

        msg = await net.message(sent["id"])
        assert msg["status"] == "partially_delivered"
        ann, bob = msg["recipients"]
        assert ann["status"] == "bounced"
        assert ann["attempts"] == 1
        assert [e["type"] for e in ann["events"]] == ["accepted", "bounced"]
        assert ann["last_reply"]["code"] == 556
        assert ann["last_reply"]["enhanced"] == "5.1.10"
        assert bob["status"] == "delivered"
        assert not [e for e in await net.events() if e["type"] == "deferred"]

        report = net.sim.report()
        assert "nullmx.test" not in report.connections_by_domain
        assert "nullmx.test" not in report.rejected_by_domain
        assert report.connections_by_domain["ok.test"].opened == 1
        assert report.accepted_by_domain == {"ok.test": 1}
        assert report.connections == 1
        assert net.sim.dns.count("nullmx.test", "MX") >= 1
