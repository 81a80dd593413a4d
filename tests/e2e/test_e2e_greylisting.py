"""Greylisting: the first attempt gets 451 4.7.1, the retry after the delay is delivered."""

from __future__ import annotations

from pathlib import Path

from postline.sim.profiles import Profile
from support.e2e import domain, internet


async def test_greylisted_mail_is_retried_and_delivered(tmp_path: Path) -> None:
    grey = domain("grey.test", Profile(name="grey", greylist=1.5))
    async with internet(tmp_path, [grey]) as net:
        sent = await net.send(["ann@grey.test", "bob@grey.test"])
        counts = await net.settle(2, timeout=30)
        assert counts == {"delivered": 2}
        msg = await net.message(sent["id"])
        for rcpt in msg["recipients"]:
            kinds = [e["type"] for e in rcpt["events"]]
            assert kinds[0] == "accepted"
            assert kinds[-1] == "delivered"
            assert "deferred" in kinds
            deferred = next(e for e in rcpt["events"] if e["type"] == "deferred")
            assert (deferred["code"], deferred["enhanced"]) == (451, "4.7.1")
            assert deferred["mx"] == "mx1.grey.test"
            assert rcpt["attempts"] >= 2
        report = net.sim.report()
        assert report.accepted == 2
        assert report.duplicate_count == 0
