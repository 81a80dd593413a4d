"""Weights split a pool's traffic: 3 : 1 between two sources, measured at the receiver.

600 messages to one domain from a pool of two sources weighted 3 and 1. Each message
draws its source by weight, so the split is binomial: 450 expected from the heavy
source, standard deviation about 11; the test allows ±60 (more than five deviations).
Each source's connections are its own: the sim sees both addresses connected at once.
"""

from __future__ import annotations

from pathlib import Path

from support.e2e import domain, internet

POOL = """
[[delivery.sources]]
name = "heavy"
address = "127.0.0.2"
weight = 3
[[delivery.sources]]
name = "light"
address = "127.0.0.3"
weight = 1
"""

TOTAL = 600


async def test_traffic_follows_the_weights(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("split.test")], delivery_extra=POOL) as net:
        await net.send_many([f"user{i}@split.test" for i in range(TOTAL)])
        assert await net.settle(TOTAL, timeout=60) == {"delivered": TOTAL}

        report = net.sim.report()
        by_ip = dict.fromkeys(("127.0.0.2", "127.0.0.3"), 0)
        for r in report.records:
            by_ip[r.client_ip] += 1
        print(f"\nweights 3:1 over {TOTAL} messages: {by_ip}")
        assert sum(by_ip.values()) == TOTAL
        assert abs(by_ip["127.0.0.2"] - TOTAL * 3 / 4) <= 60
        assert report.duplicate_count == 0
