"""One message, five recipients of one domain, mixed mailbox replies: one SMTP
transaction carries them all, each recipient gets its own outcome, and only the
transiently refused one is retried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.e2e import domain, internet
from support.node import wait_for

# Retries exactly 1 s after a deferral (no jitter), so the first round is over before
# the retry starts.
RETRY = """
[retry]
first = "1s"
multiplier = 2.0
max_interval = "2s"
max_age = "1h"
jitter = "none"
[queue]
scan_interval = "100ms"
"""

RCPTS = [
    "ann@mixed.test",
    "unknown1@mixed.test",
    "full1@mixed.test",
    "disabled1@mixed.test",
    "bob@mixed.test",
]


async def test_mixed_recipients_share_one_transaction(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("mixed.test")], node_extra=RETRY) as net:
        sent = await net.send(RCPTS)
        mid = sent["message_id"]

        async def first_round() -> dict[str, Any] | None:
            msg = await net.message(sent["id"])
            done = all(r["attempts"] >= 1 for r in msg["recipients"])
            return msg if done else None

        msg = await wait_for(first_round, timeout=8, interval=0.05)
        report = net.sim.report()
        # One connection, one transaction: both accepted recipients got the same reply to
        # the same end of DATA, and the three refusals came at RCPT TO.
        assert report.connections_by_domain["mixed.test"].opened == 1
        assert sorted(r.recipient for r in report.records) == ["ann@mixed.test", "bob@mixed.test"]
        assert {r.message_id for r in report.records} == {mid}
        first_refusals = [(j.recipient, j.code, j.enhanced, j.command) for j in report.rejections]
        assert first_refusals == [
            ("unknown1@mixed.test", 550, "5.1.1", "RCPT TO"),
            ("full1@mixed.test", 452, "4.2.2", "RCPT TO"),
            ("disabled1@mixed.test", 550, "5.2.1", "RCPT TO"),
        ]

        states = {r["address"]: r["status"] for r in msg["recipients"]}
        assert states["ann@mixed.test"] == "delivered"
        assert states["bob@mixed.test"] == "delivered"
        assert states["unknown1@mixed.test"] == "bounced"
        assert states["disabled1@mixed.test"] == "bounced"
        assert states["full1@mixed.test"] in ("deferred", "sending")
        assert msg["status"] == "in_progress"

        events = await net.events(message_id=sent["id"])
        by_type: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            by_type.setdefault(e["type"], []).append(e)
        assert len(by_type["accepted"]) == 5
        delivered = {e["recipient"]: e["data"] for e in by_type["delivered"]}
        assert set(delivered) == {"ann@mixed.test", "bob@mixed.test"}
        assert delivered["ann@mixed.test"]["text"] == delivered["bob@mixed.test"]["text"]
        assert delivered["ann@mixed.test"]["text"].startswith("Ok: queued as ")
        assert all(d["code"] == 250 and d["command"] == "DATA END" for d in delivered.values())
        bounced = {
            e["recipient"]: (e["data"]["code"], e["data"]["enhanced"]) for e in by_type["bounced"]
        }
        assert bounced == {
            "unknown1@mixed.test": (550, "5.1.1"),
            "disabled1@mixed.test": (550, "5.2.1"),
        }
        deferred = by_type["deferred"]
        assert deferred[0]["recipient"] == "full1@mixed.test"
        assert (deferred[0]["data"]["code"], deferred[0]["data"]["enhanced"]) == (452, "4.2.2")
        assert deferred[0]["data"]["command"] == "RCPT TO"
        # Every failure carries the classifier's verdict.
        verdicts = {
            e["recipient"]: (e["data"]["category"], e["data"]["hard"])
            for e in by_type["bounced"] + deferred
        }
        assert verdicts == {
            "unknown1@mixed.test": ("invalid_recipient", True),
            "disabled1@mixed.test": ("inactive_mailbox", False),
            "full1@mixed.test": ("mailbox_full", False),
        }

        # The deferred recipient comes back, alone.
        async def retried() -> bool:
            return (
                sum(1 for j in net.sim.recorder.rejections if j.recipient == "full1@mixed.test")
                >= 2
            )

        await wait_for(retried, timeout=8, interval=0.05)
        later = net.sim.report().rejections[3:]
        assert later and {j.recipient for j in later} == {"full1@mixed.test"}
        assert {(j.code, j.enhanced) for j in later} == {(452, "4.2.2")}
        report = net.sim.report()
        assert report.accepted == 2
        assert report.duplicate_count == 0

        async def recorded() -> dict[str, Any] | None:
            msg = await net.message(sent["id"])
            full = next(r for r in msg["recipients"] if r["address"] == "full1@mixed.test")
            return msg if full["attempts"] >= 2 else None

        msg = await wait_for(recorded, timeout=5, interval=0.05)
        attempts = {r["address"]: r["attempts"] for r in msg["recipients"]}
        assert attempts == {
            "ann@mixed.test": 1,
            "unknown1@mixed.test": 1,
            "full1@mixed.test": attempts["full1@mixed.test"],
            "disabled1@mixed.test": 1,
            "bob@mixed.test": 1,
        }
        events = await net.events(message_id=sent["id"])
        counted = {t: sum(1 for e in events if e["type"] == t) for t in ("delivered", "bounced")}
        assert counted == {"delivered": 2, "bounced": 2}
        assert {e["recipient"] for e in events if e["type"] == "deferred"} == {"full1@mixed.test"}
        assert await net.counts() == {"delivered": 2, "bounced": 2, "queued": 1}
