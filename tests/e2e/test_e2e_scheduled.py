"""Scheduled sending and cancellation: ``send_at`` holds a message until its time, and a
cancelled recipient (scheduled, or deferred between attempts) is never delivered."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from support.e2e import domain, internet
from support.node import wait_for

# Retries exactly 1 s after a deferral (no jitter), so a cancel right after a deferral
# lands between two attempts.
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


def _in(seconds: float) -> float:
    """A time ``seconds`` from now, whole milliseconds (what RFC 3339 below carries)."""
    return math.floor((time.time() + seconds) * 1000) / 1000


def _rfc3339(ts: float) -> str:
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


async def test_send_at_holds_the_message_until_its_time(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("later.test")]) as net:
        send_at = _in(2.0)
        sent = await net.send("ann@later.test", send_at=_rfc3339(send_at))
        assert [r["status"] for r in sent["recipients"]] == ["scheduled"]

        await asyncio.sleep(0.5)
        msg = await net.message(sent["id"])
        assert msg["status"] == "scheduled"
        rcpt = msg["recipients"][0]
        assert rcpt["attempts"] == 0
        assert rcpt["next_attempt_at"] == _rfc3339(send_at)
        assert net.sim.report().accepted == 0

        counts = await net.settle(1, timeout=8)
        assert counts == {"delivered": 1}
        report = net.sim.report()
        assert report.accepted == 1
        record = report.records[0]
        assert record.message_id == sent["message_id"]
        assert record.time >= send_at
        accepted = await net.events(type="accepted")
        assert accepted[0]["data"]["send_at"] == _rfc3339(send_at)
        msg = await net.message(sent["id"])
        assert msg["recipients"][0]["attempts"] == 1


async def test_cancelled_scheduled_message_is_never_sent(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("later.test")]) as net:
        send_at = _in(1.0)
        sent = await net.send(["ann@later.test", "bob@later.test"], send_at=_rfc3339(send_at))
        control = await net.send("carol@later.test", send_at=_rfc3339(send_at))

        r = await net.api.delete(f"/v1/messages/{sent['id']}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["cancelled"] == 2
        assert [x["status"] for x in body["recipients"]] == ["cancelled", "cancelled"]

        # The control message scheduled for the same time is delivered; the cancelled
        # one still is not, a while after its time.
        await net.settle(3, timeout=8)
        await asyncio.sleep(max(0.0, send_at + 1.0 - time.time()))
        assert await net.counts() == {"cancelled": 2, "delivered": 1}
        report = net.sim.report()
        assert [r.message_id for r in report.records] == [control["message_id"]]
        assert report.connections_by_domain["later.test"].opened == 1

        msg = await net.message(sent["id"])
        assert msg["status"] == "cancelled"
        for rcpt in msg["recipients"]:
            assert rcpt["attempts"] == 0
            assert [e["type"] for e in rcpt["events"]] == ["accepted", "cancelled"]
        r = await net.api.delete(f"/v1/messages/{sent['id']}")
        assert r.json()["cancelled"] == 0


async def test_deferred_recipient_cancelled_between_attempts_stays_cancelled(
    tmp_path: Path,
) -> None:
    async with internet(tmp_path, [domain("grey.test")], node_extra=RETRY) as net:
        sent = await net.send("greylist-a@grey.test")
        control = await net.send("greylist-b@grey.test")

        async def deferred() -> dict[str, Any] | None:
            msg = await net.message(sent["id"])
            return msg if msg["recipients"][0]["status"] == "deferred" else None

        msg = await wait_for(deferred, timeout=5, interval=0.02)
        assert msg["recipients"][0]["attempts"] == 1
        r = await net.api.delete(f"/v1/messages/{sent['id']}")
        assert r.status_code == 200, r.text
        assert r.json()["cancelled"] == 1

        # The control recipient, greylisted the same way, gets through on its retry.
        counts = await net.settle(2, timeout=8)
        assert counts == {"cancelled": 1, "delivered": 1}
        await asyncio.sleep(1.5)  # another retry interval: nothing picks it up again
        assert await net.counts() == {"cancelled": 1, "delivered": 1}

        report = net.sim.report()
        assert [r.message_id for r in report.records] == [control["message_id"]]
        refused = [j.recipient for j in report.rejections]
        assert refused.count("greylist-a@grey.test") == 1
        assert refused.count("greylist-b@grey.test") == 1

        msg = await net.message(sent["id"])
        rcpt = msg["recipients"][0]
        assert rcpt["status"] == "cancelled"
        assert rcpt["attempts"] == 1
        assert [e["type"] for e in rcpt["events"]] == ["accepted", "deferred", "cancelled"]
        assert (rcpt["events"][1]["code"], rcpt["events"][1]["enhanced"]) == (451, "4.7.1")
