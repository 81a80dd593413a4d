"""A message cancelled while its recipients wait in a ready buffer is not sent.

A buffered recipient (waiting for the destination's rate or a connection) is still
``queued`` in the store when DELETE cancels it; the engine must drop it rather than send
it when its turn comes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from support.e2e import domain, internet

RULE = {
    "name": "slow",
    "domains": ["hold.test"],
    "scope": "domain",
    "messages": 1,
    "period": "3s",
    "burst": 1,
    "connections": 1,
}


async def test_cancelled_buffered_message_is_not_sent(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("hold.test")], rules=[RULE]) as net:
        first = await net.send("ann@hold.test")
        second = await net.send("bob@hold.test")
        # The first goes out at once; the second waits ~3 s for the rate, leased.
        await asyncio.sleep(0.5)
        r = await net.api.delete(f"/v1/messages/{second['id']}")
        assert r.status_code == 200, r.text
        assert r.json()["cancelled"] == 1
        assert r.json()["recipients"][0]["status"] == "cancelled"

        await asyncio.sleep(4.0)
        received = {rec.message_id for rec in net.sim.report().records}
        assert first["message_id"] in received  # the node did deliver at the rate
        assert second["message_id"] not in received, "a cancelled message was delivered"
        status = (await net.message(second["id"]))["recipients"][0]["status"]
        assert status == "cancelled", status
