"""Expiry: a recipient that keeps getting 4xx past ``[retry] max_age`` expires, while the
other recipient of the same message is delivered."""

from __future__ import annotations

from pathlib import Path

from support.e2e import domain, internet

# Attempts at about 0 s, 1 s and 2 s; the next one is due at the 3 s deadline.
SHORT_LIFE = """
[retry]
first = "1s"
multiplier = 2.0
max_interval = "1s"
max_age = "3s"
jitter = "none"
[queue]
scan_interval = "100ms"
"""


async def test_tempfail_recipient_expires_other_is_delivered(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("exp.test")], node_extra=SHORT_LIFE) as net:
        sent = await net.send(["tempfail1@exp.test", "ann@exp.test"])
        counts = await net.settle(2, timeout=10)
        assert counts == {"delivered": 1, "expired": 1}

        msg = await net.message(sent["id"])
        assert msg["status"] == "partially_delivered"
        temp, ann = msg["recipients"]
        assert ann["status"] == "delivered"
        assert ann["attempts"] == 1
        assert [e["type"] for e in ann["events"]] == ["accepted", "delivered"]

        assert temp["status"] == "expired"
        assert temp["next_attempt_at"] is None
        deferrals = [e for e in temp["events"] if e["type"] == "deferred"]
        assert len(deferrals) >= 2
        assert [e["type"] for e in temp["events"]] == [
            "accepted",
            *["deferred"] * len(deferrals),
            "expired",
        ]
        for e in deferrals:
            assert (e["code"], e["enhanced"], e["text"]) == (451, "4.3.0", "Temporary failure")
            assert e["mx"] == "mx1.exp.test"
        assert temp["attempts"] >= len(deferrals)

        expired = await net.events(type="expired")
        assert len(expired) == 1
        event = expired[0]
        assert event["recipient"] == "tempfail1@exp.test"
        assert event["message_id"] == sent["id"]
        assert event["data"]["code"] == 451
        # 4.4.7: the queue's own "too old" reply; 4.3.0: the receiver's reply to a last
        # attempt made at the deadline.
        assert event["data"]["enhanced"] in ("4.4.7", "4.3.0")
        assert expired[0]["at"] >= temp["expires_at"]
        assert await net.events(type="bounced") == []

        report = net.sim.report()
        assert [(r.recipient, r.message_id) for r in report.records] == [
            ("ann@exp.test", sent["message_id"])
        ]
        refused = [j for j in report.rejections if j.recipient == "tempfail1@exp.test"]
        assert len(refused) == len(deferrals) + (event["data"]["enhanced"] == "4.3.0")
        assert {(j.code, j.enhanced, j.command) for j in refused} == {(451, "4.3.0", "RCPT TO")}


async def test_retry_scheduled_at_the_deadline_is_attempted(tmp_path: Path) -> None:
    """``next_attempt`` promises one last try at the deadline (``min(now + backoff,
    expires_at)``); that try must reach the receiver before the recipient expires."""
    async with internet(tmp_path, [domain("exp.test")], node_extra=SHORT_LIFE) as net:
        sent = await net.send("tempfail1@exp.test")
        counts = await net.settle(1, timeout=10)
        assert counts == {"expired": 1}
        msg = await net.message(sent["id"])
        rcpt = msg["recipients"][0]
        deferrals = [e for e in rcpt["events"] if e["type"] == "deferred"]
        assert len(deferrals) == 3  # at about 0 s, 1 s and 2 s; the 4th is due at 3 s
        refused = [j for j in net.sim.report().rejections if j.recipient == "tempfail1@exp.test"]
        assert len(refused) == 4, "the retry due at the deadline was never sent"
        assert rcpt["attempts"] == 4
