"""MX fallback: a dead preferred mail exchanger is skipped for the next one; a domain
without MX records is delivered to its own address (RFC 5321 §5.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from postline.sim.profiles import DomainSpec, MXHostSpec, Profile
from support.e2e import internet
from support.node import wait_for

DEAD = Profile(name="dead", dead=True)


async def test_dead_primary_falls_back_to_secondary(tmp_path: Path) -> None:
    fallback = DomainSpec(
        "fallback.test",
        mx=(
            MXHostSpec("mx1.fallback.test", 10, profile=DEAD),
            MXHostSpec("mx2.fallback.test", 20),
        ),
    )
    bare = DomainSpec("bare.test", kind="implicit")
    async with internet(tmp_path, [fallback, bare]) as net:
        first = await net.send(["ann@fallback.test", "bob@fallback.test"])
        second = await net.send("carol@bare.test")
        counts = await net.settle(3, timeout=10)
        assert counts == {"delivered": 3}

        delivered = await net.events(type="delivered")
        by_rcpt = {e["recipient"]: e["data"] for e in delivered}
        assert set(by_rcpt) == {"ann@fallback.test", "bob@fallback.test", "carol@bare.test"}
        for rcpt in ("ann@fallback.test", "bob@fallback.test"):
            assert by_rcpt[rcpt]["mx"] == "mx2.fallback.test"
            assert by_rcpt[rcpt]["ip"] == net.sim.addresses["mx2.fallback.test"]
            assert by_rcpt[rcpt]["code"] == 250
            assert by_rcpt[rcpt]["attempt"] == 1
        assert by_rcpt["carol@bare.test"]["mx"] == "bare.test"
        assert by_rcpt["carol@bare.test"]["ip"] == net.sim.addresses["bare.test"]
        # The refused connection to the primary is no attempt of its own.
        assert await net.events(type="deferred") == []

        msg = await net.message(first["id"])
        assert [r["last_reply"]["mx"] for r in msg["recipients"]] == ["mx2.fallback.test"] * 2
        msg = await net.message(second["id"])
        assert msg["recipients"][0]["events"][-1]["mx"] == "bare.test"

        report = net.sim.report()
        assert report.accepted_by_domain == {"bare.test": 1, "fallback.test": 2}
        assert {r.host for r in report.records if r.domain == "fallback.test"} == {
            "mx2.fallback.test"
        }
        assert "mx1.fallback.test" not in report.connections_by_host
        assert report.connections_by_host["mx2.fallback.test"].opened == 1
        assert report.connections_by_host["bare.test"].opened == 1
        assert net.sim.dns.count("bare.test", "MX") >= 1
        assert net.sim.dns.count("bare.test", "A") >= 1


async def test_every_mx_dead_defers_with_a_connection_reply(tmp_path: Path) -> None:
    down = DomainSpec(
        "down.test",
        mx=(MXHostSpec("mx1.down.test", 10, DEAD), MXHostSpec("mx2.down.test", 20, DEAD)),
    )
    async with internet(tmp_path, [down]) as net:
        sent = await net.send("ann@down.test")

        async def deferred() -> list[dict[str, Any]]:
            return await net.events(type="deferred")

        events = await wait_for(deferred, timeout=8, interval=0.1)
        data = events[0]["data"]
        assert (data["code"], data["enhanced"]) == (421, "4.4.1")
        assert data["command"] == "CONNECT"
        assert net.sim.addresses["mx2.down.test"] in data["text"]
        assert await net.events(type="bounced") == []
        assert await net.counts() == {"queued": 1}
        msg = await net.message(sent["id"])
        assert msg["recipients"][0]["attempts"] >= 1
        assert net.sim.report().connections == 0
