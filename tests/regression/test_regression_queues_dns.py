"""GET /v1/queues answers at once, whatever the state of DNS.

The listing shows the throttle state of destinations whose route is already known and
never waits for a lookup: queues exist precisely for domains whose DNS is failing.
"""

from __future__ import annotations

import time
from pathlib import Path

from postline.sim.profiles import DomainSpec
from support.e2e import domain, internet

NODE = """
[retry]
first = "1h"
[queue]
scan_interval = "100ms"
"""


async def test_queue_listing_does_not_wait_for_dead_dns(tmp_path: Path) -> None:
    dead = [DomainSpec(name=f"dead{i}.test", kind="blackhole") for i in range(3)]
    async with internet(tmp_path, [domain("ok.test"), *dead], node_extra=NODE) as net:
        for d in dead:
            await net.send(f"ann@{d.name}")
        # Right away, or any time the cached failures (5 s) have lapsed: the same.
        t0 = time.monotonic()
        r = await net.api.get("/v1/queues")
        elapsed = time.monotonic() - t0
        assert r.status_code == 200
        assert len(r.json()["queues"]) == 3
        assert elapsed < 0.5, f"GET /v1/queues took {elapsed:.1f}s"
