"""STARTTLS towards receivers: used when offered (opportunistic, the default), never with
``[delivery] tls = "disabled"``, and a receiver without STARTTLS still gets the mail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from postline.sim.profiles import Profile
from support.e2e import domain, internet
from support.node import wait_for

DOMAINS = [domain("tls.test"), domain("plain.test", Profile(name="plain", tls=False))]


async def test_opportunistic_tls_is_used_when_offered(tmp_path: Path) -> None:
    async with internet(tmp_path, DOMAINS) as net:
        await net.send(["ann@tls.test", "bob@tls.test"])
        await net.send("carol@plain.test")
        counts = await net.settle(3, timeout=10)
        assert counts == {"delivered": 3}

        report = net.sim.report()
        used = sorted((r.recipient, r.tls) for r in report.records)
        assert used == [
            ("ann@tls.test", True),
            ("bob@tls.test", True),
            ("carol@plain.test", False),
        ]
        assert report.rejected == 0
        assert await net.events(type="deferred") == []


async def test_tls_disabled_sends_in_clear_text(tmp_path: Path) -> None:
    async with internet(tmp_path, DOMAINS, delivery_extra='tls = "disabled"') as net:
        await net.send(["ann@tls.test", "bob@tls.test"])
        await net.send("carol@plain.test")
        counts = await net.settle(3, timeout=10)
        assert counts == {"delivered": 3}

        report = net.sim.report()
        used = sorted((r.recipient, r.tls) for r in report.records)
        assert used == [
            ("ann@tls.test", False),
            ("bob@tls.test", False),
            ("carol@plain.test", False),
        ]
        assert report.connections_by_domain["tls.test"].opened == 1


async def test_tls_required_defers_a_receiver_without_starttls(tmp_path: Path) -> None:
    async with internet(tmp_path, DOMAINS, delivery_extra='tls = "required"') as net:
        await net.send("ann@tls.test")
        await net.send("carol@plain.test")

        async def deferred() -> list[dict[str, Any]]:
            return await net.events(type="deferred")

        events = await wait_for(deferred, timeout=8, interval=0.05)
        assert events[0]["recipient"] == "carol@plain.test"
        data = events[0]["data"]
        assert (data["code"], data["enhanced"], data["command"]) == (421, "4.7.4", "STARTTLS")
        assert "TLS is required" in data["text"]

        delivered = await wait_for(lambda: net.sim.report().records, timeout=8)
        assert [(r.recipient, r.tls) for r in delivered] == [("ann@tls.test", True)]
        assert await net.events(type="bounced") == []

        async def recorded() -> dict[str, int] | None:
            counts = await net.counts()
            return counts if counts.get("delivered") else None

        assert await wait_for(recorded, timeout=5) == {"delivered": 1, "queued": 1}
