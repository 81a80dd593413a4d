"""A lease does not end while its attempt is still talking to the receiver.

Leases of work in progress are renewed; without that, a slow (tarpitting) receiver
makes an attempt outlast its lease, the recipient is leased again and sent twice.
Scaled down here: lease 2 s, a receiver that waits 0.5 s before every reply.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from postline.sim.profiles import Profile
from support.e2e import domain, internet

NODE = """
[retry]
first = "1s"
max_interval = "2s"
[queue]
scan_interval = "100ms"
lease_time = "2s"
"""


async def test_slow_receiver_gets_each_message_once(tmp_path: Path) -> None:
    slow = domain("slow.test", Profile(tarpit=0.5))
    async with internet(tmp_path, [slow], node_extra=NODE) as net:
        sent = await net.send("ann@slow.test")
        await net.settle(1, timeout=15)
        await asyncio.sleep(3.0)  # a second attempt started at the lease end needs ~4 s
        copies = [r for r in net.sim.report().records if r.message_id == sent["message_id"]]
        assert len(copies) == 1, f"delivered {len(copies)} times"
