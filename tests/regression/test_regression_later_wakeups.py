"""Every retry time of a domain wakes it, not only the earliest one known.

Two recipients of one greylisting domain are deferred to different times, the second
while the domain already waits for the first. The second retry must go out when it is
due, not at the next full queue scan (15 s here).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from postline.sim.profiles import Profile
from support.e2e import domain, internet

NO_JITTER = """
[retry]
first = "1s"
multiplier = 2.0
max_interval = "2s"
max_age = "1h"
jitter = "none"
[queue]
scan_interval = "15s"
"""


async def test_a_later_retry_of_a_waiting_domain_is_not_left_to_the_scan(
    tmp_path: Path,
) -> None:
    grey = domain("grey.test", Profile(name="grey", greylist=0.5))
    async with internet(tmp_path, [grey], node_extra=NO_JITTER, greylist_delay=0.5) as net:
        t0 = time.monotonic()
        await net.send("first@grey.test")
        await asyncio.sleep(0.6)
        await net.send("second@grey.test")
        counts = await net.settle(2, timeout=12)
        assert counts == {"delivered": 2}
        assert time.monotonic() - t0 < 8, "the second retry waited for the queue scan"
        deferred = await net.events(type="deferred")
        assert {e["recipient"] for e in deferred} == {"first@grey.test", "second@grey.test"}
